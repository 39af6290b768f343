"""End to end across worker processes: every job handled, exactly once in a clean run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.conftest import Target
from tests.runtime.helpers import (
    SAMPLE,
    blocked_readers,
    ledger_pids,
    read_ledger,
    start_worker,
    total_counts,
    wait_until,
)


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


async def test_ten_thousand_jobs_across_two_workers_are_each_handled_once(
    redis: Redis, long_target: Target, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    workers = [
        start_worker(long_target.url, ledger, functions="tasks", log=tmp_path / "log")
        for _ in range(2)
    ]
    try:

        async def both_ready() -> bool:
            return await blocked_readers(redis) == 2

        await wait_until(both_ready, what="two workers waiting for jobs")
        client = Client(redis, load(SAMPLE))
        receipts = await client.publish_many(
            "tasks", [Event(workspace=f"ws{i % 7}", data={"n": i}) for i in range(10_000)]
        )
        published = {r.id for r in receipts}
        assert len(published) == 10_000

        async def all_completed() -> bool:
            return (await total_counts(redis, "tasks")).completed == 10_000

        await wait_until(all_completed, timeout_s=60, what="10,000 completions")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=30) for worker in workers]
    assert codes == [0, 0]
    handled = read_ledger(ledger)
    assert set(handled) == published
    assert max(handled.values()) == 1
    assert len(ledger_pids(ledger)) == 2
    final = await total_counts(redis, "tasks")
    assert (final.waiting, final.active, final.failed, final.fenced) == (0, 0, 0, 0)
