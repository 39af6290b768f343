"""Schedules made over HTTP run: a schedule PUT through the ingress is ticked by a
scheduler and its jobs run on a worker, whenever the scheduler last read the
schedules (a new schedule's first run may fall before its next read), with a
limit of one run, start and end bounds, cron in a zone, replaced by name while
due, and paused then resumed. Each waits for the job itself (polling Redis with
a deadline), never for a fixed time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sluice.runtime import Jobs
from sluice.runtime.registry import load
from sluice.runtime.scheduler.ticks import upcoming_ticks
from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.repeats import Schedule
from tests.ingress.conftest import Api
from tests.redis_server import RedisServer
from tests.runtime.helpers import (
    SAMPLE,
    keys_for,
    start_worker,
    wait_until,
    worker_in_process,
)

ONCE = "/v1/schedules/tasks/once"


async def put(api: Api, path: str, body: dict[str, Any]) -> Any:
    answer = await api.http.put(path, json=body, headers=api.auth("acme"))
    assert answer.status == 200, await answer.text()
    return await answer.json()


async def completed(api: Api, name: str) -> list[str]:
    """The ids of the schedule's runs that completed, over HTTP as a client reads them."""
    answer = await api.http.get("/v1/jobs?function=tasks&state=completed&limit=100",
                                headers=api.auth("acme"))  # fmt: skip
    assert answer.status == 200, await answer.text()
    jobs = (await answer.json())["jobs"]
    return [job["id"] for job in jobs if job["id"].startswith(f"rpt:acme:{name}:")]


async def runs_of(api: Api, name: str, count: int, timeout_s: float) -> list[str]:
    async def ran() -> bool:
        return len(await completed(api, name)) >= count

    await wait_until(ran, timeout_s, what=f"{count} run(s) of schedule {name!r}")
    return await completed(api, name)


async def first_read(api: Api, redis: Redis) -> None:
    """Returns once the scheduler has read the schedules: a sentinel schedule has
    more ticks ahead than the two published when it was made."""
    await put(api, "/v1/schedules/tasks/sentinel", {"data": {"n": 0}, "every_ms": 1000})
    jobs = Jobs(redis, load(SAMPLE))

    async def read() -> bool:
        return (await jobs.counts("tasks")).delayed > 2

    await wait_until(read, 10.0, what="the scheduler's first read")


async def test_a_schedule_of_one_run_made_just_after_a_read_runs(
    api: Api, redis: Redis, shared_server: RedisServer
) -> None:
    # The scheduler re-reads schedules every 3 s; the schedule is made just after a
    # read, and its one run falls 1 s later: before the next read.
    async with worker_in_process(shared_server.url, "tasks", scheduler=True, recheck_s=3.0):
        await first_read(api, redis)
        made = await put(api, ONCE, {"data": {"n": 1}, "every_ms": 1000, "limit": 1})
        assert made["last_ms"] == made["created_ms"] + 1000
        (run,) = await runs_of(api, "once", 1, timeout_s=10.0)
    assert run.endswith(f":{made['last_ms']}")


async def test_the_ticks_due_between_two_reads_run_once_each(
    api: Api, redis: Redis, shared_server: RedisServer
) -> None:
    # Three runs a second apart, all before the scheduler's next read: the first
    # two are published when the schedule is made, the third at that read, late.
    async with worker_in_process(shared_server.url, "tasks", scheduler=True, recheck_s=4.0):
        await first_read(api, redis)
        made = await put(api, "/v1/schedules/tasks/three", {"data": {"n": 1}, "every_ms": 1000,
                                                             "limit": 3})  # fmt: skip
        runs = await runs_of(api, "three", 3, timeout_s=12.0)
    ticks = sorted(int(run.rsplit(":", 1)[1]) for run in runs)
    assert ticks == [made["created_ms"] + k * 1000 for k in (1, 2, 3)]


async def test_a_run_due_before_any_scheduler_read_the_schedule_runs_late_once(
    api: Api, redis: Redis, shared_server: RedisServer
) -> None:
    # No scheduler runs when the schedule is made, nor when its one run falls due
    # (one starting, restarting, or down): it starts later, and the run comes late.
    made = await put(api, ONCE, {"data": {"n": 1}, "every_ms": 1000, "limit": 1})

    async def passed() -> bool:
        seconds, micros = await redis.time()
        return bool(seconds * 1000 + micros // 1000 > made["last_ms"])

    await wait_until(passed, 5.0, what="the run's due time to pass")
    async with worker_in_process(shared_server.url, "tasks", scheduler=True):
        (run,) = await runs_of(api, "once", 1, timeout_s=10.0)
    assert tick_of(run) == made["last_ms"]


def tick_of(job_id: str) -> int:
    return int(job_id.rsplit(":", 1)[1])


def version_of(job_id: str) -> str:
    """`rpt:<workspace>:<name>:<version>:<tick>`: the schedule version that made it."""
    return job_id.split(":")[3]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@pytest.mark.slow
async def test_one_run_between_a_start_and_an_end_with_scheduler_and_worker_processes(
    api: Api, redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> None:
    # `sluice scheduler` and `sluice worker` as deployed (the default re-check).
    now = env.now_ms()
    processes = [start_worker(shared_server.url, tmp_path / "ledger", functions="tasks", role=role)
                 for role in ("scheduler", "worker")]  # fmt: skip
    try:
        bounded = await put(api, "/v1/schedules/tasks/bounded",
                            {"data": {"n": 1}, "every_ms": 1000, "limit": 1,
                             "start": iso(now + 1500), "end": iso(now + 60_000)})  # fmt: skip
        await put(api, ONCE, {"data": {"n": 2}, "every_ms": 1000, "limit": 1})
        (run,) = await runs_of(api, "bounded", 1, timeout_s=20.0)
        assert tick_of(run) == bounded["start_ms"] == bounded["last_ms"]
        await runs_of(api, "once", 1, timeout_s=20.0)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            assert process.wait(timeout=15) == 0


async def test_a_schedule_replaced_by_name_while_due_runs_as_replaced(
    api: Api, shared_server: RedisServer
) -> None:
    async with worker_in_process(shared_server.url, "tasks", scheduler=True):
        first = await put(api, "/v1/schedules/tasks/swap", {"data": {"n": 1}, "every_ms": 1000})
        await runs_of(api, "swap", 1, timeout_s=10.0)
        # Its next tick is due within a second: replaced now, while it is due.
        second = await put(api, "/v1/schedules/tasks/swap",
                           {"data": {"n": 2}, "every_ms": 1000, "limit": 1})  # fmt: skip
        new = str(second["created_ms"])

        async def replaced_ran() -> bool:
            return any(version_of(run) == new for run in await completed(api, "swap"))

        await wait_until(replaced_ran, 10.0, what="the replacement's run")
        runs = await completed(api, "swap")
    assert [tick_of(r) for r in runs if version_of(r) == new] == [second["last_ms"]]
    # The replaced version's ticks due after the replacement were cancelled.
    old = [tick_of(r) for r in runs if version_of(r) == str(first["created_ms"])]
    assert old
    assert max(old) <= second["created_ms"], (old, second["created_ms"])


async def test_a_paused_schedule_does_not_run_and_a_resumed_one_runs_from_then(
    api: Api, redis: Redis, shared_server: RedisServer
) -> None:
    jobs_of = keys_for(redis, "tasks", "acme").jobs

    async def resumed_ticks() -> list[int]:
        """The ticks of every job the resumed schedule made (its version has a '.')."""
        stored: Any = await redis.hkeys(jobs_of)
        ids = [i.decode() for i in stored]
        return [tick_of(i) for i in ids if i.startswith("rpt:acme:paused:") and "." in i]

    async with worker_in_process(shared_server.url, "tasks", scheduler=True, recheck_s=3.0):
        made = await put(api, "/v1/schedules/tasks/paused", {"data": {"n": 1}, "every_ms": 1000})
        paused = await api.http.post("/v1/schedules/tasks/paused/pause", headers=api.auth("acme"))
        assert paused.status == 200
        paused_ms = env.now_ms()
        # A witness: its first tick comes after the paused one's first.
        await put(api, "/v1/schedules/tasks/witness", {"data": {"n": 2}, "every_ms": 1000})
        await runs_of(api, "witness", 1, timeout_s=10.0)
        resumed_ms = env.now_ms()
        resumed = await api.http.post("/v1/schedules/tasks/paused/resume",
                                      headers=api.auth("acme"))  # fmt: skip
        assert resumed.status == 200

        # The resume published two ticks; a scheduler's read, which looks back to
        # the read before, publishes the rest up to its next.
        async def read_since() -> bool:
            return len(await resumed_ticks()) > 2

        await wait_until(read_since, 10.0, what="a scheduler read after the resume")
        before = await completed(api, "paused")
        runs = await runs_of(api, "paused", len(before) + 1, timeout_s=10.0)
    # No tick that fell while paused was made again, nor ran; each ran once.
    assert min(await resumed_ticks()) > resumed_ms
    ticks = sorted(tick_of(r) for r in runs)
    assert not [t for t in ticks if paused_ms < t <= resumed_ms], (ticks, paused_ms, resumed_ms)
    assert ticks == sorted(set(ticks))
    assert all((t - made["created_ms"]) % 1000 == 0 for t in ticks)


def test_a_cron_tick_due_between_two_reads_is_published_late_once() -> None:
    # "0 10 * * *" in Berlin, one run, made at 09:59:59.500 (CEST) just after a read
    # at 09:59:59.200; the next read, at 10:00:00.300, finds it due.
    ten = int(datetime.fromisoformat("2027-06-01T10:00:00+02:00").timestamp() * 1000)
    schedule = Schedule(name="ten", workspace="acme", payload=msgspec.Raw(b"{}"),
                        cron="0 10 * * *", zone="Europe/Berlin", anchor_ms=ten - 500,
                        limit=1, last_ms=ten)  # fmt: skip
    (tick,) = upcoming_ticks(schedule, "tasks", ten + 300, 1.0, since_ms=ten - 800)
    assert tick.due_ms == ten
    # A scheduler's first read (nothing before it) or one after the tick: none.
    assert upcoming_ticks(schedule, "tasks", ten + 300, 1.0) == []
    assert upcoming_ticks(schedule, "tasks", ten + 1300, 1.0, since_ms=ten + 300) == []
    # Resumed after the tick: it fell while paused, and stays passed.
    resumed = msgspec.structs.replace(schedule, resumed_ms=ten + 100)
    assert upcoming_ticks(resumed, "tasks", ten + 300, 1.0, since_ms=ten - 800) == []


@pytest.mark.slow
async def test_a_cron_schedule_in_a_zone_runs_its_one_run(
    api: Api, shared_server: RedisServer
) -> None:
    # Every minute in Kathmandu (UTC+05:45): its one run comes within a minute.
    async with worker_in_process(shared_server.url, "tasks", scheduler=True):
        made = await put(api, "/v1/schedules/tasks/minute", {"data": {"n": 1}, "limit": 1,
                         "cron": "* * * * *", "zone": "Asia/Kathmandu"})  # fmt: skip
        (run,) = await runs_of(api, "minute", 1, timeout_s=75.0)
    assert tick_of(run) == made["last_ms"]
    assert made["last_ms"] % 60_000 == 0
