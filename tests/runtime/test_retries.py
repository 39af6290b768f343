"""Retries with backoff, Retry(after=...), Reject, dead letters and their replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.runtime import Client, DeadLetters, Event
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys
from tests.conftest import Target
from tests.runtime.helpers import SAMPLE, read_ledger, total_counts, wait_until, worker_in_process


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


RETRY = PartitionKeys("retry-tasks", 0)
# Scheduling slack allowed beyond a computed due time: loop turns, one settle
# round trip, the scheduler's wake-up, a read. Loose for a loaded CI machine.
TOLERANCE_S = 0.25


@pytest.fixture
def attempts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "attempts"
    monkeypatch.setenv("ATTEMPTS_FILE", str(path))
    return path


def attempt_times(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Job id -> [(attempt, wall-clock seconds)] in the order they ran."""
    runs: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        job_id, attempt, ns = line.split()
        runs.setdefault(job_id, []).append((int(attempt), int(ns) / 1e9))
    return runs


async def test_failed_attempts_are_retried_with_capped_jittered_backoff(
    target: Target, ledger: Path, attempts_file: Path
) -> None:
    redis = target.redis
    client = Client(redis, load(SAMPLE))
    flaky = [
        await client.publish(
            "retry-tasks", workspace="ws", data={"n": i, "mode": "raise", "fail_times": 2}
        )
        for i in range(20)
    ]
    asked = await client.publish(
        "retry-tasks",
        workspace="ws",
        data={"n": 99, "mode": "retry", "retry_after_ms": 600, "fail_times": 1},
    )
    async with worker_in_process(target.url, "retry-tasks", scheduler=True):

        async def all_done() -> bool:
            return (await total_counts(redis, "retry-tasks")).completed == 21

        await wait_until(all_done, what="21 jobs to complete after retries")
    runs = attempt_times(attempts_file)
    for receipt in flaky:
        (a1, t1), (a2, t2), (a3, t3) = runs[receipt.id]
        assert (a1, a2, a3) == (1, 2, 3)
        # Full jitter: the wait after attempt k is drawn below min(cap, base * 2**(k-1)).
        assert 0 <= t2 - t1 <= 0.3 + TOLERANCE_S
        assert 0 <= t3 - t2 <= 0.5 + TOLERANCE_S
        record = await get_job(redis, RETRY, receipt.id)
        assert record is not None
        assert (record.state, record.attempts) == ("completed", 3)
    (_, first), (_, second) = runs[asked.id]
    assert 0.6 <= second - first <= 0.6 + TOLERANCE_S
    assert set(read_ledger(ledger)) == {r.id for r in [*flaky, asked]}
    assert (await total_counts(redis, "retry-tasks")).failed == 41


async def test_the_last_failure_dead_letters_with_its_history_and_replay_succeeds(
    target: Target, ledger: Path, tmp_path: Path
) -> None:
    redis = target.redis
    client = Client(redis, load(SAMPLE))
    broken = tmp_path / "provider-down"
    broken.touch()
    receipt = await client.publish(
        "retry-tasks", workspace="ws", data={"n": 1, "mode": "raise", "fail_while": str(broken)}
    )
    rejected = await client.publish("retry-tasks", workspace="ws", data={"n": 2, "mode": "reject"})
    letters = DeadLetters(redis, load(SAMPLE))
    async with worker_in_process(target.url, "retry-tasks", scheduler=True):

        async def both_dead() -> bool:
            return (await total_counts(redis, "retry-tasks")).dead == 2

        await wait_until(both_dead, what="both jobs to be dead-lettered")
        by_id = {letter.envelope.id: letter for letter in await letters.read("retry-tasks")}
        assert by_id[receipt.id].envelope.errors == ("ValueError: task 1 refused",) * 3
        assert by_id[receipt.id].envelope.attempt == 3
        # Reject skips the remaining attempts.
        assert by_id[rejected.id].envelope.errors == ("Reject: task 2 can never work",)
        record = await get_job(redis, RETRY, receipt.id)
        assert record is not None
        assert (record.state, record.attempts) == ("dead", 3)

        broken.unlink()  # the provider is back
        assert await letters.replay("retry-tasks", ids=[receipt.id]) == 1
        assert await letters.replay("retry-tasks", ids=[receipt.id]) == 0  # once only

        async def replayed() -> bool:
            return (await total_counts(redis, "retry-tasks")).completed == 1

        await wait_until(replayed, what="the replayed job to complete")
    record = await get_job(redis, RETRY, receipt.id)
    assert record is not None
    assert (record.state, record.attempts) == ("completed", 1)
    assert read_ledger(ledger) == {receipt.id: 1}
    assert await letters.purge("retry-tasks", workspace="ws") == 1
    assert await get_job(redis, RETRY, rejected.id) is None
    counts = await total_counts(redis, "retry-tasks")
    assert (counts.dead, counts.replayed, counts.purged) == (0, 1, 1)


async def test_a_partly_failed_batch_retries_only_its_failed_jobs(
    redis: Redis, long_target: Target, ledger: Path, attempts_file: Path
) -> None:
    client = Client(redis, load(SAMPLE))
    events = [
        Event(
            workspace=f"ws{i % 2}",
            data={"n": i, "mode": "raise" if i % 5 == 0 else "ok", "fail_times": 1},
        )
        for i in range(40)
    ]
    receipts = await client.publish_many("batch-retry-tasks", events)
    async with worker_in_process(long_target.url, "batch-retry-tasks", scheduler=True):

        async def all_done() -> bool:
            return (await total_counts(redis, "batch-retry-tasks")).completed == 40

        await wait_until(all_done, what="40 completions, 8 of them on a second attempt")
    runs = attempt_times(attempts_file)
    failing = {r.id for r, e in zip(receipts, events, strict=True) if e.data["mode"] == "raise"}
    assert {job_id: [a for a, _ in r] for job_id, r in runs.items() if job_id in failing} == {
        job_id: [1, 2] for job_id in failing
    }
    assert all([a for a, _ in r] == [1] for job_id, r in runs.items() if job_id not in failing)
    assert read_ledger(ledger) == {r.id: 1 for r in receipts}
    assert (await total_counts(redis, "batch-retry-tasks")).failed == 8
