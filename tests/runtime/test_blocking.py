"""Handlers that block: plain def handlers run in threads; a loop blocked by an
async one keeps its claims and is named in the log."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sluice.runtime import Client
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys
from tests.conftest import Target
from tests.runtime.helpers import (
    SAMPLE,
    read_ledger,
    start_worker,
    total_counts,
    wait_completed,
    worker_in_process,
)


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


async def test_a_handler_blocking_the_loop_is_run_once_and_named(
    redis: Redis, long_target: Target, tmp_path: Path
) -> None:
    # blocking-tasks: visibility timeout 1 s; the handler blocks its worker's loop
    # for 3 s while a second worker looks for idle entries every 0.3 s.
    client = Client(redis, load(SAMPLE))
    ledger, logs = tmp_path / "ledger", [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_worker(long_target.url, ledger, functions="blocking-tasks", log=log)
               for log in logs]  # fmt: skip
    try:
        receipt = await client.publish(
            "blocking-tasks", workspace="ws", data={"n": 1, "sleep_ms": 3000}
        )
        await wait_completed(redis, "blocking-tasks", 1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(timeout=15) == 0
    assert read_ledger(ledger) == {receipt.id: 1}
    final = await total_counts(redis, "blocking-tasks")
    assert (final.completed, final.dead, final.fenced) == (1, 0, 0)
    text = "".join(log.read_text() for log in logs)
    assert "event loop blocked" in text
    assert "_run_blocking" in text
    assert f"blocking-tasks job {receipt.id}" in text


async def test_a_plain_def_handler_runs_in_a_thread_and_is_never_cut_short(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    # thread-tasks: a plain def with a 0.5 s timeout; the second job takes 1 s.
    # A thread cannot be stopped, so its outcome stands rather than a retry
    # running the job again beside it.
    client = Client(redis, load(SAMPLE))
    quick = await client.publish("thread-tasks", workspace="ws", data={"n": 1, "sleep_ms": 10})
    slow = await client.publish("thread-tasks", workspace="ws", data={"n": 2, "sleep_ms": 1000})
    async with worker_in_process(long_target.url, "thread-tasks"):
        await wait_completed(redis, "thread-tasks", 2)
    assert read_ledger(ledger) == {quick.id: 1, slow.id: 1}
    keys = PartitionKeys("thread-tasks", 0)
    for receipt in (quick, slow):
        record = await get_job(redis, keys, receipt.id)
        assert record is not None
        assert record.state == "completed"
        assert record.result["thread"].startswith("sluice-thread-tasks")
