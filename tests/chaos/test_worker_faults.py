"""Workers killed, stopped, and cut off from Redis: nothing lost, duplicates counted."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.streams.connection import Redis, connect
from sluice.streams.consume import ensure_group
from sluice.streams.jobs import get_job
from sluice.streams.keys import GROUP, PartitionKeys
from tests.conftest import Target, settings_for
from tests.redis_server import RedisServer
from tests.runtime.helpers import (
    SAMPLE,
    blocked_readers,
    ledger_order,
    read_ledger,
    start_worker,
    total_counts,
    wait_completed,
    wait_unavailable,
    wait_until,
    worker_in_process,
)

pytestmark = pytest.mark.chaos


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """The tests here run on the single server, and on the 3-master cluster too with
    --long (tests/conftest.py: long_target); those that stop, restart or pause their
    own `server` stay on one server: a cluster node killed and restarted, and a
    failover, are test_cluster_faults's."""
    return long_target.redis


TASKS = PartitionKeys("tasks", 0)


async def publish_tasks(redis: Redis, function: str, n: int, **data: object) -> set[str]:
    client = Client(redis, load(SAMPLE))
    events = [Event(workspace=f"ws{i % 5}", data={"n": i, **data}) for i in range(n)]
    return {r.id for r in await client.publish_many(function, events)}


async def test_sigterm_hands_back_unfinished_jobs_at_once(
    redis: Redis, long_target: Target, tmp_path: Path
) -> None:
    # slow-tasks has a 60 s visibility timeout: finishing well within it proves the
    # stopped worker's jobs came back by hand-back, not by reclaim.
    ledger = tmp_path / "ledger"
    grace_s = 3.0
    first = start_worker(long_target.url, ledger, functions="slow-tasks", grace_s=grace_s)
    published = await publish_tasks(redis, "slow-tasks", 200, sleep_ms=100)

    async def under_way() -> bool:
        return len(read_ledger(ledger)) >= 10

    await wait_until(under_way, what="the first worker to make progress")
    stopped_at = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=grace_s + 5) == 0
    print(f"SIGTERM to exit: {time.monotonic() - stopped_at:.2f} s (grace {grace_s} s)")
    keys = PartitionKeys("slow-tasks", 0)
    assert await redis.xinfo_consumers(keys.stream, GROUP) == []  # it left the group
    handled_by_first = len(read_ledger(ledger))
    assert handled_by_first < 200
    second = start_worker(long_target.url, ledger, functions="slow-tasks")
    try:
        await wait_completed(redis, "slow-tasks", 200, timeout_s=40)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    handled = read_ledger(ledger)
    assert set(handled) == published
    assert max(handled.values()) == 1  # in-flight jobs finished; the rest were handed back


async def test_sigterm_past_the_grace_period_hands_back_the_running_job(
    target: Target, tmp_path: Path
) -> None:
    redis = target.redis
    ledger = tmp_path / "ledger"
    worker = start_worker(target.url, ledger, functions="slow-tasks", grace_s=0.5)
    (job_id,) = await publish_tasks(redis, "slow-tasks", 1, sleep_ms=20_000)
    keys = PartitionKeys("slow-tasks", 0)

    async def running() -> bool:
        return (await total_counts(redis, "slow-tasks")).active == 1

    await wait_until(running, what="the job to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    counts = await total_counts(redis, "slow-tasks")
    assert (counts.waiting, counts.active, counts.completed, counts.failed) == (1, 0, 0, 0)
    record = await get_job(redis, keys, job_id)
    assert record is not None
    assert (record.state, record.attempts) == ("queued", 0)  # no attempt charged


async def test_redis_restarted_under_a_running_worker(server: RedisServer, ledger: Path) -> None:
    redis = connect(settings_for(server.url))
    try:
        published = await publish_tasks(redis, "tasks", 2_000, sleep_ms=2)
        async with worker_in_process(server.url, "tasks") as health:

            async def under_way() -> bool:
                return len(read_ledger(ledger)) >= 200

            await wait_until(under_way, what="progress before the restart")
            server.stop()

            await wait_unavailable(health)
            server.start()

            await wait_completed(redis, "tasks", 2_000, timeout_s=60)
            assert health.available
    finally:
        await redis.aclose()
    handled = read_ledger(ledger)
    assert set(handled) == published
    print(f"Redis restart: {sum(c - 1 for c in handled.values())} jobs handled twice")


async def test_worker_started_while_redis_is_down_waits_and_then_works(
    server: RedisServer, ledger: Path
) -> None:
    server.stop()
    async with worker_in_process(server.url, "tasks") as health:
        await wait_unavailable(health)
        server.start()
        redis = connect(settings_for(server.url))
        try:

            async def ready() -> bool:
                return await blocked_readers(redis) == 1

            await wait_until(ready, what="the worker to join")
            published = await publish_tasks(redis, "tasks", 100)

            await wait_completed(redis, "tasks", 100)
        finally:
            await redis.aclose()
    assert set(read_ledger(ledger)) == published


async def test_a_paused_redis_stalls_but_never_hangs_the_worker(
    server: RedisServer, ledger: Path
) -> None:
    redis = connect(settings_for(server.url))
    try:
        async with worker_in_process(server.url, "tasks") as health:
            published = await publish_tasks(redis, "tasks", 500, sleep_ms=2)
            server.pause()  # SIGSTOP: connections stay open, nothing answers

            await wait_unavailable(health)
            server.resume()

            await wait_completed(redis, "tasks", 500, timeout_s=60)
    finally:
        await redis.aclose()
    assert set(read_ledger(ledger)) == published


async def test_a_killed_workers_jobs_go_ahead_of_a_full_survivors_queue(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    # tasks: visibility timeout 2 s, 8 lanes, room for 208 held jobs. The survivor
    # is full of 1 s jobs for longer than the test runs: the victim's jobs must be
    # taken over at the first look past the timeout and run before the survivor's
    # queue, not wait for room that a busy worker never has.
    await ensure_group(redis, TASKS)
    lost = await publish_tasks(redis, "tasks", 30, sleep_ms=1000)
    victim = start_worker(long_target.url, ledger, functions="tasks")
    try:

        async def holding_all() -> bool:
            summary: dict[str, Any] = await redis.xpending(TASKS.stream, GROUP)
            return int(summary["pending"]) == len(lost)

        await wait_until(holding_all, what="the victim to hold every job")
    finally:
        victim.kill()
        victim.wait(timeout=10)
    backlog = await publish_tasks(redis, "tasks", 300, sleep_ms=1000)
    async with worker_in_process(long_target.url, "tasks"):

        async def recovered() -> bool:
            return lost <= set(read_ledger(ledger))

        await wait_until(recovered, timeout_s=60, what="the victim's jobs to run again")
    order = ledger_order(ledger)
    last_lost = max(i for i, job_id in enumerate(order) if job_id in lost)
    ahead = sum(1 for job_id in order[:last_lost] if job_id in backlog)
    # Eight 1 s jobs run when the victim's are taken over (at 2-2.3 s), a few more
    # may start before they are queued; without going first they wait for about
    # 100 of the survivor's jobs.
    assert ahead <= 40, f"{ahead} of the survivor's jobs ran before the victim's last"


async def test_a_zombie_worker_does_not_run_jobs_finished_elsewhere(
    redis: Redis,
    long_target: Target,
    tmp_path: Path,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # long-tasks: visibility timeout 1 s, two lanes. The zombie holds four 2 s jobs,
    # runs two, and freezes; the survivor takes all four over and finishes them.
    # Thawed, the zombie's two running calls end (their settles are fenced), and
    # the two it never started must not run: they are another's, and done.
    keys = PartitionKeys("long-tasks", 0)
    await ensure_group(redis, keys)
    jobs = await publish_tasks(redis, "long-tasks", 4, sleep_ms=2000)
    log = tmp_path / "zombie.log"
    # Each handler start is noted there (tests.sample_functions): frozen only once
    # both lanes run, as a lane may start its call a moment after the read.
    started = tmp_path / "attempts"
    monkeypatch.setenv("ATTEMPTS_FILE", str(started))
    zombie = start_worker(long_target.url, ledger, functions="long-tasks", log=log)
    try:

        async def holding_all_running_two() -> bool:
            summary: dict[str, Any] = await redis.xpending(keys.stream, GROUP)
            running = started.read_text().count("\n") if started.exists() else 0
            return int(summary["pending"]) == len(jobs) and running == 2

        await wait_until(holding_all_running_two, what="the zombie to hold every job, run two")
        zombie.send_signal(signal.SIGSTOP)
        async with worker_in_process(long_target.url, "long-tasks"):
            await wait_completed(redis, "long-tasks", len(jobs))
        zombie.send_signal(signal.SIGCONT)

        async def skipped() -> bool:
            return "late jobs not run" in log.read_text()

        await wait_until(skipped, what="the zombie to skip the jobs done elsewhere")
    finally:
        zombie.send_signal(signal.SIGCONT)
        zombie.send_signal(signal.SIGTERM)
        assert zombie.wait(timeout=15) == 0
    handled = read_ledger(ledger)
    assert set(handled) == jobs
    # The survivor ran all four; the zombie only the two it was running.
    assert sum(handled.values()) == len(jobs) + 2
