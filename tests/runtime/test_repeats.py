"""Repeatable jobs: one run per tick however many schedulers run, restarts, listing, removal."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from sluice.runtime import InvalidSchedule, Jobs
from sluice.runtime.client.repeats import Repeats
from sluice.runtime.registry import load
from sluice.streams import envelope
from sluice.streams.connection import Redis
from tests.conftest import Target
from tests.runtime.helpers import (
    SAMPLE,
    read_ledger,
    start_worker,
    subscribed_schedulers,
    wait_until,
    worker_in_process,
)


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


def tick_times(ledger: Path) -> list[int]:
    """The tick (ms) of every run in the ledger, in order; ids end in the tick."""
    return sorted(int(job_id.rsplit(":", 1)[1]) for job_id in read_ledger(ledger))


async def test_each_tick_runs_once_with_three_schedulers_and_after_a_restart(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    repeats, jobs = Repeats(redis, registry), Jobs(redis, registry)
    schedule = await repeats.add(
        "tasks", "heartbeat", workspace="ops", data={"n": 1}, every_ms=1000
    )
    others = [
        start_worker(long_target.url, ledger, functions="tasks", role="scheduler") for _ in range(2)
    ]
    try:

        async def started() -> bool:
            return await subscribed_schedulers(redis) == 2

        await wait_until(started, what="the schedulers to start")
        async with worker_in_process(long_target.url, "tasks", scheduler=True):

            async def three_runs() -> bool:
                return len(read_ledger(ledger)) >= 3

            await wait_until(three_runs, timeout_s=20, what="three ticks")

        for p in others:
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=15) == 0
        # Everything stopped; a fresh scheduler picks the schedule up from Redis.
        before = len(read_ledger(ledger))
        async with worker_in_process(long_target.url, "tasks", scheduler=True):

            async def more_runs() -> bool:
                return len(read_ledger(ledger)) >= before + 2

            await wait_until(more_runs, timeout_s=20, what="ticks after the restart")
    finally:
        for p in others:
            if p.poll() is None:
                p.kill()
    handled = read_ledger(ledger)
    assert max(handled.values()) == 1, "a tick ran twice"
    ticks = tick_times(ledger)
    assert all((t - schedule.anchor_ms) % 1000 == 0 for t in ticks)
    assert len(set(ticks)) == len(ticks)
    counts = await jobs.counts("tasks")
    assert counts.completed == len(handled)


@pytest.mark.parametrize("skew_ms", [300_000, -300_000], ids=["ahead", "behind"])
async def test_a_scheduler_whose_clock_is_off_makes_the_ticks_due_by_redis_clock(
    redis: Redis,
    long_target: Target,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
    skew_ms: int,
) -> None:
    # A scheduler 5 minutes ahead made only the ticks due 5 minutes on (those of
    # the next 5 minutes never), one 5 minutes behind the first two and then
    # none for 5 minutes: it chose the next ticks by its own clock.
    repeats = Repeats(redis, load(SAMPLE))
    await repeats.add("tasks", "heartbeat", workspace="ops", data={"n": 1}, every_ms=1000)
    true_now_ms = envelope.now_ms
    monkeypatch.setattr(envelope, "now_ms", lambda: true_now_ms() + skew_ms)
    async with worker_in_process(long_target.url, "tasks", scheduler=True):

        async def three_runs() -> bool:
            return len(read_ledger(ledger)) >= 3

        await wait_until(three_runs, timeout_s=20, what="three ticks")
    seconds, micros = await redis.time()
    assert max(tick_times(ledger)) <= seconds * 1000 + micros // 1000


async def test_schedules_are_listed_replaced_and_removed_with_their_pending_tick(
    redis: Redis, long_target: Target
) -> None:
    registry = load(SAMPLE)
    repeats, jobs = Repeats(redis, registry), Jobs(redis, registry)
    await repeats.add(
        "tasks", "nightly", workspace="ops", data={"n": 1}, cron="0 3 * * *", zone="Europe/Berlin"
    )
    await repeats.add("tasks", "poll", workspace="ops", data={"n": 2}, every_ms=60_000)
    replaced = await repeats.add("tasks", "poll", workspace="ops", data={"n": 3}, every_ms=30_000)
    assert [(s.name, s.cron, s.every_ms) for s in await repeats.read("tasks")] == [
        ("nightly", "0 3 * * *", 0),
        ("poll", "", 30_000),
    ]
    assert replaced.every_ms == 30_000
    async with worker_in_process(long_target.url, "tasks", scheduler=True):

        async def ticks_ahead() -> bool:
            return (await jobs.counts("tasks")).delayed == 4  # two per schedule

        await wait_until(ticks_ahead, what="the schedulers to publish the next ticks")
    assert await repeats.remove("tasks", "poll", workspace="ops")
    assert not await repeats.remove("tasks", "poll", workspace="ops")
    assert [s.name for s in await repeats.read("tasks")] == ["nightly"]
    counts = await jobs.counts("tasks")
    # The first two ticks of "poll" (published when added) cancelled when it was
    # replaced, the replacement's two at its removal.
    assert (counts.delayed, counts.cancelled) == (2, 4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "0 3 * *"}, "5 fields"),
        ({"cron": "0 3 * * *", "zone": "Nowhere/Land"}, "unknown time zone"),
        ({"every_ms": 10}, "at least 1000"),
        ({"every_ms": 10**15}, "10 years"),
        ({}, "give cron or every_ms"),
        ({"cron": "0 3 * * *", "every_ms": 5000}, "give cron or every_ms"),
    ],
)
async def test_a_bad_schedule_is_refused_and_nothing_saved(
    redis: Redis, options: dict[str, Any], message: str
) -> None:
    repeats = Repeats(redis, load(SAMPLE))
    with pytest.raises(InvalidSchedule, match=message):
        await repeats.add("tasks", "bad", workspace="ops", data={"n": 1}, **options)
    assert await repeats.read("tasks") == []


async def test_schedule_names_belong_to_their_workspace(redis: Redis) -> None:
    repeats = Repeats(redis, load(SAMPLE))
    for tenant in ("tenant-a", "tenant-b"):
        await repeats.add("tasks", "daily", workspace=tenant, data={"n": 1}, cron="0 6 * * *")
    assert sorted(s.workspace for s in await repeats.read("tasks")) == ["tenant-a", "tenant-b"]
    assert await repeats.remove("tasks", "daily", workspace="tenant-a")
    assert [s.workspace for s in await repeats.read("tasks")] == ["tenant-b"]
