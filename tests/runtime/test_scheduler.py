"""Schedulers: every delayed job promoted exactly once, however many run or die, on time."""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.conftest import Target
from tests.redis_server import free_port
from tests.runtime.helpers import (
    SAMPLE,
    read_ledger,
    start_worker,
    total_counts,
    wait_until,
    worker_in_process,
)


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


async def publish_spread(client: Client, n: int, over_ms: int) -> list[str]:
    """`n` jobs for "tasks", due evenly over the `over_ms` after a 100 ms start."""
    events = [
        Event(workspace=f"ws{i % 7}", data={"n": i}, delay_ms=100 + i * over_ms // n)
        for i in range(n)
    ]
    ids: list[str] = []
    for start in range(0, n, 1000):
        ids += [r.id for r in await client.publish_many("tasks", events[start : start + 1000])]
    return ids


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        assert p.wait(timeout=15) in (0, -signal.SIGKILL)


async def promoting(port: int) -> bool:
    """Whether the scheduler with health port `port` has promoted (its loop runs)."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as answer,
        ):
            return answer.status == 200 and "promote" in (await answer.json())["last_s"]
    except aiohttp.ClientConnectionError:
        return False


@pytest.mark.parametrize("schedulers", [2, 3])
async def test_racing_schedulers_promote_each_job_exactly_once(
    redis: Redis, long_target: Target, ledger: Path, schedulers: int, long_run: bool
) -> None:
    """Every scheduler promotes before the jobs are published, so all of them race for
    the jobs as they fall due over 2 s: one every 0.4 ms in the bounded run's 5,000,
    each scheduler running the promote script again and again against the others.
    --long publishes 20,000 (a backlog forms while they go in)."""
    n = 20_000 if long_run else 5_000
    ports = [free_port() for _ in range(schedulers)]
    running = [
        start_worker(
            long_target.url,
            ledger,
            functions="tasks",
            role="scheduler",
            environ={"SLUICE_HEALTH_PORT": str(port)},
        )
        for port in ports
    ]
    try:
        for port in ports:
            await wait_until(partial(promoting, port), what=f"the scheduler on {port} to promote")
        client = Client(redis, load(SAMPLE))
        ids = await publish_spread(client, n, over_ms=2_000)
        async with worker_in_process(long_target.url, "tasks"):

            async def all_done() -> bool:
                return (await total_counts(redis, "tasks")).completed == n

            await wait_until(all_done, timeout_s=60, what=f"{n:,} delayed jobs to complete")
    finally:
        stop_all(running)
    handled = read_ledger(ledger)
    assert set(handled) == set(ids)
    assert max(handled.values()) == 1
    counts = await total_counts(redis, "tasks")
    assert (counts.promoted, counts.delayed, counts.waiting) == (n, 0, 0)


async def test_a_scheduler_killed_mid_run_loses_and_repeats_nothing(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    client = Client(redis, load(SAMPLE))
    ids = await publish_spread(client, 10_000, over_ms=3_000)
    first = start_worker(long_target.url, ledger, functions="tasks", role="scheduler")
    second: subprocess.Popen[bytes] | None = None
    try:
        async with worker_in_process(long_target.url, "tasks"):

            async def some_promoted() -> bool:
                return (await total_counts(redis, "tasks")).promoted >= 2_000

            await wait_until(some_promoted, what="the first scheduler to promote")
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
            assert (await total_counts(redis, "tasks")).delayed > 0, "killed too late to tell"
            second = start_worker(long_target.url, ledger, functions="tasks", role="scheduler")

            async def all_done() -> bool:
                return (await total_counts(redis, "tasks")).completed == 10_000

            await wait_until(all_done, timeout_s=60, what="every job after the kill")
    finally:
        stop_all([first] + ([second] if second else []))
    handled = read_ledger(ledger)
    assert set(handled) == set(ids)
    assert max(handled.values()) == 1
    assert (await total_counts(redis, "tasks")).promoted == 10_000


async def test_jobs_start_close_to_their_due_time(
    redis: Redis, long_target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = tmp_path / "attempts"
    monkeypatch.setenv("ATTEMPTS_FILE", str(attempts))
    client = Client(redis, load(SAMPLE))
    n, over_ms = 2_000, 5_000
    async with worker_in_process(long_target.url, "tasks", scheduler=True):
        start_ms = time.time_ns() // 1_000_000 + 500
        due = {}
        events = []
        for i in range(n):
            at_ms = start_ms + i * over_ms // n
            events.append(Event(workspace=f"ws{i % 7}", data={"n": i}, run_at=_rfc3339(at_ms)))
        receipts = await client.publish_many("tasks", events)
        due = {r.id: start_ms + i * over_ms // n for i, r in enumerate(receipts)}

        async def all_done() -> bool:
            return (await total_counts(redis, "tasks")).completed == n

        await wait_until(all_done, timeout_s=30, what="2,000 timed jobs")
    lateness = sorted(
        int(ns) / 1e6 - due[job_id]
        for job_id, _, ns in (line.split() for line in attempts.read_text().splitlines())
    )
    p50, p99 = statistics.median(lateness), lateness[int(n * 0.99)]
    print(f"lateness over {n} jobs: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lateness[-1]:.1f} ms")
    assert lateness[0] > -5, "a job ran before it was due"  # clocks: host vs Redis, same machine
    assert p99 < 100


def _rfc3339(epoch_ms: int) -> str:
    seconds, ms = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}+00:00"
