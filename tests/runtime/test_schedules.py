"""A schedule's bounds and state: its next runs across Berlin's DST changes, a start,
an end and a run limit the scheduler keeps to, pause and resume, and schedules
stored before the bounds existed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
import pytest

from sluice.runtime import InvalidSchedule, Jobs, LocalTime, Repeats
from sluice.runtime.registry import load
from sluice.runtime.scheduler.ticks import next_runs, upcoming_ticks
from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.repeats import Schedule
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE, wait_until, worker_in_process


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


async def test_next_runs_across_both_dst_changes_in_berlin(redis: Redis) -> None:
    repeats = Repeats(redis, load(SAMPLE))
    spring = await repeats.add("tasks", "spring", workspace="ops", data={"n": 1},
                               cron="30 2 * * *", zone="Europe/Berlin",
                               start="2027-03-27T00:00:00[Europe/Berlin]")  # fmt: skip
    # 02:30 does not exist on 28 March: it runs when the clocks jump, 03:00 CEST.
    assert [utc(t) for t in next_runs(spring, 0, 3)] == [
        "2027-03-27 01:30",
        "2027-03-28 01:00",
        "2027-03-29 00:30",
    ]
    autumn = await repeats.add("tasks", "autumn", workspace="ops", data={"n": 1},
                               cron="30 2 * * *", zone="Europe/Berlin",
                               start=LocalTime("2027-10-30T00:00", "Europe/Berlin"))  # fmt: skip
    # 02:30 occurs twice on 31 October: it runs once, the first time (CEST).
    assert [utc(t) for t in next_runs(autumn, 0, 3)] == [
        "2027-10-30 00:30",
        "2027-10-31 00:30",
        "2027-11-01 01:30",
    ]
    stored = await repeats.get("tasks", "autumn", workspace="ops")
    assert stored == autumn


async def test_start_end_and_limit_bound_the_runs(redis: Redis) -> None:
    repeats = Repeats(redis, load(SAMPLE))
    start = "2027-01-01T09:00:00+01:00"
    hourly = await repeats.add("tasks", "hourly", workspace="ops", data={"n": 1},
                               every_ms=3_600_000, start=start, limit=3)  # fmt: skip
    assert [utc(t) for t in next_runs(hourly, 0, 10)] == [
        "2027-01-01 08:00",
        "2027-01-01 09:00",
        "2027-01-01 10:00",
    ]
    assert hourly.last_ms == next_runs(hourly, 0, 3)[-1]
    weekdays = await repeats.add("tasks", "weekdays", workspace="ops", data={"n": 1},
                                 cron="0 9 * * mon-fri", zone="Europe/Berlin", start=start,
                                 end="2027-01-06T12:00:00+01:00")  # fmt: skip
    # 1 January 2027 is a Friday.
    assert [utc(t) for t in next_runs(weekdays, 0, 10)] == [
        "2027-01-01 08:00",
        "2027-01-04 08:00",
        "2027-01-05 08:00",
        "2027-01-06 08:00",
    ]
    limited = await repeats.add("tasks", "limited", workspace="ops", data={"n": 1},
                                cron="0 9 * * mon-fri", zone="Europe/Berlin", start=start,
                                limit=2, end="2027-02-01T00:00:00Z")  # fmt: skip
    assert len(next_runs(limited, 0, 10)) == 2
    # The limit's last run is past: nothing more to publish.
    assert upcoming_ticks(limited, "tasks", limited.last_ms, 60.0) == []


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"start": "2027-01-02T00:00:00Z", "end": "2027-01-01T00:00:00Z"}, "end", "after start"),
        ({"limit": 0}, "limit", "from 1 to"),
        ({"limit": 10_001}, "limit", "from 1 to"),
        ({"start": "tomorrow"}, "start", "RFC 3339"),
        ({"end": "2027-01-01T00:00:00[Nowhere/Land]"}, "end", "unknown time zone"),
    ],
)
async def test_bad_bounds_are_refused_naming_the_field(
    redis: Redis, options: dict[str, object], field: str, message: str
) -> None:
    repeats = Repeats(redis, load(SAMPLE))
    with pytest.raises(InvalidSchedule, match=message) as refused:
        await repeats.add("tasks", "bad", workspace="ops", data={"n": 1}, every_ms=60_000,
                          **options)  # type: ignore[arg-type]  # fmt: skip
    assert refused.value.field == field
    assert await repeats.read("tasks") == []


async def test_a_cron_limit_beyond_five_years_is_refused(redis: Redis) -> None:
    repeats = Repeats(redis, load(SAMPLE))
    with pytest.raises(InvalidSchedule, match="within 5 years"):
        await repeats.add("tasks", "leap", workspace="ops", data={"n": 1},
                          cron="0 0 29 2 *", limit=5)  # fmt: skip


async def test_the_scheduler_stops_at_the_limit_and_at_the_end(
    redis: Redis, shared_server: RedisServer
) -> None:
    registry = load(SAMPLE)
    repeats, jobs = Repeats(redis, registry), Jobs(redis, registry)
    now = env.now_ms()
    # Ten runs a second apart from a start in the past: only the last one is
    # still to come (in about 0.7 s).
    await repeats.add("tasks", "limited", workspace="ops", data={"n": 1}, every_ms=1000,
                      start=datetime.fromtimestamp((now - 9000 + 700) / 1000, UTC),
                      limit=10)  # fmt: skip
    # Ends before its second run.
    await repeats.add("tasks", "ending", workspace="ops", data={"n": 2}, every_ms=1000,
                      end=datetime.fromtimestamp((now + 1500) / 1000, UTC))  # fmt: skip
    async with worker_in_process(shared_server.url, "tasks", scheduler=True, recheck_s=0.2):

        async def both_ran() -> bool:
            return (await jobs.counts("tasks")).completed == 2

        await wait_until(both_ran, timeout_s=10, what="the last run of each")
        # Ticks are published ahead (two at least): past its bounds, none was.
        counts = await jobs.counts("tasks")
    assert (counts.delayed, counts.completed, counts.published) == (0, 2, 2)


async def test_pause_cancels_the_pending_ticks_and_resume_makes_new_ones(
    redis: Redis, shared_server: RedisServer
) -> None:
    registry = load(SAMPLE)
    repeats, jobs = Repeats(redis, registry), Jobs(redis, registry)
    await repeats.add("tasks", "poll", workspace="ops", data={"n": 1}, every_ms=60_000)

    def delayed(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return (await jobs.counts("tasks")).delayed == n

        return check

    async with worker_in_process(shared_server.url, "tasks", scheduler=True, recheck_s=0.1):
        await wait_until(delayed(2), timeout_s=5, what="two ticks ahead")
        paused = await repeats.pause("tasks", "poll", workspace="ops")
        assert paused is not None
        assert paused.paused
        assert (await jobs.counts("tasks")).delayed == 0
        assert next_runs(paused, env.now_ms(), 1) != []  # its times stay; no ticks are made
        resumed = await repeats.resume("tasks", "poll", workspace="ops")
        assert resumed is not None
        assert not resumed.paused
        # The cancelled ticks' ids are not reused: the resumed schedule's are new jobs.
        await wait_until(delayed(2), timeout_s=5, what="new ticks")
    counts = await jobs.counts("tasks")
    assert counts.cancelled == 2
    assert await repeats.pause("tasks", "nothing", workspace="ops") is None


class _OldSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as stored before start, end, limit and pause existed."""

    name: str
    workspace: str
    payload: msgspec.Raw
    cron: str = ""
    zone: str = "UTC"
    every_ms: int = 0
    anchor_ms: int = 0


async def test_a_schedule_stored_before_the_bounds_reads_unbounded(redis: Redis) -> None:
    registry = load(SAMPLE)
    (keys,) = registry.partitions("tasks", "ops", cluster=False)
    old = _OldSchedule(name="old", workspace="ops", payload=msgspec.Raw(msgspec.msgpack.encode(
        {"n": 1})), every_ms=60_000, anchor_ms=1000)  # fmt: skip
    await redis.hset(keys.repeats, "ops/old", msgspec.msgpack.encode(old))
    (read,) = await Repeats(redis, registry).read("tasks")
    assert isinstance(read, Schedule)
    assert (read.start_ms, read.end_ms, read.limit, read.paused) == (0, 0, 0, False)
    assert next_runs(read, 1000, 2) == [61_000, 121_000]
