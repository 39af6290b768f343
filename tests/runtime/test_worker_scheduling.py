"""A `sluice worker` alone promotes due jobs (delayed, retries, rate-limit deferrals);
with the opt-out it leaves them to dedicated schedulers."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from sluice.runtime import Client, Event, Jobs
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.conftest import Target
from tests.runtime.helpers import SAMPLE, start_worker, total_counts, wait_until


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def test_a_worker_alone_runs_delayed_retried_and_deferred_jobs(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    client = Client(redis, load(SAMPLE))
    await client.publish_many(
        "retry-tasks",
        [
            Event(workspace="acme", data={"n": 1}, delay_ms=300),
            Event(workspace="acme", data={"n": 2, "mode": "raise", "fail_times": 1}),
        ],
    )
    # 50/s with bursts of 10: most of these are deferred to the delayed set.
    await client.publish_many(
        "limited-tasks", [Event(workspace="acme", data={"n": i}) for i in range(30)]
    )
    worker = start_worker(long_target.url, ledger, functions="retry-tasks,limited-tasks")
    try:

        async def all_done() -> bool:
            retried = await total_counts(redis, "retry-tasks")
            limited = await total_counts(redis, "limited-tasks")
            return (retried.completed, limited.completed) == (2, 30)

        await wait_until(all_done, timeout_s=20, what="a lone worker to run every due job")
    finally:
        stop(worker)
    assert (await total_counts(redis, "retry-tasks")).failed == 1


@pytest.mark.parametrize(
    ("options", "environ"),
    [(["--no-scheduler"], {}), ([], {"SLUICE_WORKER_SCHEDULER": "false"})],
    ids=["flag", "setting"],
)
async def test_a_worker_told_not_to_schedule_leaves_due_jobs_delayed(
    redis: Redis,
    long_target: Target,
    ledger: Path,
    options: Sequence[str],
    environ: Mapping[str, str],
) -> None:
    registry = load(SAMPLE)
    client = Client(redis, registry)
    later = await client.publish("tasks", workspace="acme", data={"n": 1}, delay_ms=200)
    record = await Jobs(redis, registry).get("tasks", later.id)
    assert record is not None
    assert record.state == "delayed"
    worker = start_worker(
        long_target.url, ledger, functions="tasks", options=options, environ=environ
    )
    try:

        async def past_due() -> bool:
            return await redis_ms(redis) > record.due_ms

        await wait_until(past_due, what="the delayed job to fall due")
        # Published after the first is due, and run: the worker is up and reading,
        # and a scheduler beside it would have promoted the first one on its start.
        await client.publish("tasks", workspace="acme", data={"n": 2})

        async def ran() -> bool:
            return (await total_counts(redis, "tasks")).completed == 1

        await wait_until(ran, what="the worker to run a job published now")
    finally:
        stop(worker)
    still = await Jobs(redis, registry).get("tasks", later.id)
    assert still is not None
    assert still.state == "delayed"
    assert (await total_counts(redis, "tasks")).promoted == 0
