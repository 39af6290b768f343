"""Handlers for tests: each records what it handled in a ledger file, then acts as told.

The ledger is a file (LEDGER_FILE), not Redis, so it survives Redis being killed
and tells exactly which job ids each process ran, and how often.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Literal

import aiohttp
import msgspec

from sluice.runtime import Batch, Job, Reject, Retry, batch_function, function
from sluice.streams.connection import RedisSettings, connect


class Task(msgspec.Struct, frozen=True):
    n: int
    # ok: succeed; raise: fail; hang: outlive the timeout; die: SIGKILL the worker;
    # reject: fail for good; retry: ask to be retried after `retry_after_ms`;
    # ping: talk to Redis (REDIS_URL) in a loop until cancelled.
    mode: Literal["ok", "raise", "hang", "die", "slow", "reject", "retry", "ping"] = "ok"
    sleep_ms: int = 0
    note: str = ""
    # Act as `mode` on the first `fail_times` attempts, then succeed (0: always act).
    fail_times: int = 0
    # Act as `mode` while this file exists, then succeed.
    fail_while: str = ""
    retry_after_ms: int = 0
    # GET this URL first on every attempt (a webhook; it carries the trace on).
    webhook: str = ""


class _Ledger:
    def __init__(self) -> None:
        self.path: str | None = None
        self.fd = -1

    def attempt(self, job: Job[Task]) -> None:
        """Note each attempt with its wall-clock time in ATTEMPTS_FILE, if set."""
        path = os.environ.get("ATTEMPTS_FILE")
        if path:
            with open(path, "a") as out:
                out.write(f"{job.id} {job.attempt} {time.time_ns()}\n")

    def batch(self, size: int) -> None:
        """Note each batch handler call's size in BATCHES_FILE, if set."""
        path = os.environ.get("BATCHES_FILE")
        if path:
            with open(path, "a") as out:
                out.write(f"{size}\n")

    def record(self, ids: list[str]) -> None:
        path = os.environ.get("LEDGER_FILE")
        if not path:
            return
        if path != self.path:
            self.path, self.fd = path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        # One O_APPEND write per call: lines of concurrent processes never interleave.
        os.write(self.fd, "".join(f"{i} {os.getpid()}\n" for i in ids).encode())


ledger = _Ledger()


def _acting(job: Job[Task]) -> bool:
    task = job.data
    if task.fail_while:
        return Path(task.fail_while).exists()
    return not task.fail_times or job.attempt <= task.fail_times


async def _act(task: Task) -> None:
    if task.mode == "reject":
        raise Reject(f"task {task.n} can never work")
    if task.mode == "retry":
        raise Retry(after=task.retry_after_ms / 1000)
    if task.mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if task.mode == "raise":
        raise ValueError(f"task {task.n} refused")
    if task.mode == "hang":
        await asyncio.Event().wait()
    if task.mode == "ping":
        client = connect(RedisSettings(url=os.environ["REDIS_URL"]))
        try:
            while True:
                await client.ping()
        finally:
            await client.aclose()
    if task.sleep_ms:
        # The job's simulated work, as long as it asked for.
        await asyncio.sleep(task.sleep_ms / 1000)


async def _run(job: Job[Task]) -> dict[str, object] | None:
    ledger.attempt(job)
    if job.data.webhook:
        async with aiohttp.ClientSession() as http, http.get(job.data.webhook) as answer:
            answer.raise_for_status()
    if _acting(job):
        await _act(job.data)
    ledger.record([job.id])
    # A note comes back as the job's result.
    return {"note": job.data.note, "n": job.data.n} if job.data.note else None


# The single-job functions differ only in their options. A failure is final
# (one attempt) except in "retry-tasks".
run_task = function(
    "tasks",
    input=Task,
    attempts=1,
    concurrency=8,
    timeout_s=2.0,
    visibility_timeout_s=2.0,
    max_deliveries=3,
    retention_s=600,
)(_run)
run_retry_task = function(
    "retry-tasks",
    input=Task,
    attempts=3,
    backoff_base_s=0.3,
    backoff_cap_s=0.5,
    timeout_s=2.0,
)(_run)
# A 60 s visibility timeout: finishing well within it proves hand-back, not reclaim.
run_slow_task = function(
    "slow-tasks", input=Task, concurrency=4, timeout_s=30.0, visibility_timeout_s=60.0
)(_run)
# A 1 s visibility timeout: a longer job survives only through heartbeats.
run_long_task = function(
    "long-tasks", input=Task, concurrency=2, timeout_s=30.0, visibility_timeout_s=1.0
)(_run)


async def _run_batch(batch: Batch[Task]) -> None:
    ledger.batch(len(batch))
    done = []
    for job in batch.jobs:
        ledger.attempt(job)
        if job.data.mode == "raise" and _acting(job):
            batch.fail(job, f"task {job.data.n} refused")
        else:
            done.append(job.id)
    ledger.record(done)


run_batch = batch_function(
    "batch-tasks",
    input=Task,
    batch_size=50,
    attempts=1,
    concurrency=4,
    timeout_s=2.0,
    visibility_timeout_s=2.0,
    max_deliveries=3,
    partitions=2,
)(_run_batch)
# The same handler with retries: a partly failed batch retries only its failures.
run_batch_retrying = batch_function(
    "batch-retry-tasks",
    input=Task,
    batch_size=50,
    attempts=3,
    backoff_base_s=0.1,
    backoff_cap_s=0.2,
    concurrency=4,
)(_run_batch)


# Fairness and priorities: each workspace's share of the stream is one batch (50).
run_fair_batch = batch_function("fair-tasks", input=Task, batch_size=50, concurrency=2)(_run_batch)

# Waits up to 400 ms to fill a batch of 10.
run_windowed_batch = batch_function(
    "window-tasks", input=Task, batch_size=10, batch_window_ms=400, concurrency=2
)(_run_batch)

# Rate-limited: 50 jobs/s for the function, bursts of 10; 10/s per workspace in
# "tier-tasks" (tiers are overridden at run time).
run_limited_task = function(
    "limited-tasks", input=Task, batch_size=20, concurrency=8, rate_per_s=50, rate_burst_s=0.2
)(_run)
# The same limit over 4 partitions: one busy workspace (one partition) gets all of it.
run_spread_limited_task = function(
    "spread-limited-tasks",
    input=Task,
    batch_size=20,
    concurrency=8,
    rate_per_s=20,
    rate_burst_s=0.2,
    partitions=4,
)(_run)
run_tier_task = function(
    "tier-tasks",
    input=Task,
    batch_size=20,
    concurrency=8,
    workspace_rate_per_s=10,
    rate_burst_s=0.2,
)(_run)

# Fails for good at once; only the newest 3 dead letters are kept.
run_doomed_task = function(
    "doomed-tasks", input=Task, attempts=1, timeout_s=2.0, dead_retention_count=3
)(_run)


async def _run_blocking(job: Job[Task]) -> None:
    """Blocks the event loop for `sleep_ms`: the mistake runtime.worker.stall survives."""
    ledger.attempt(job)
    time.sleep(job.data.sleep_ms / 1000)  # noqa: ASYNC251 - blocking on purpose
    ledger.record([job.id])


# A 1 s visibility timeout, and a handler that blocks the loop for longer.
run_blocking_task = function(
    "blocking-tasks", input=Task, concurrency=1, timeout_s=30.0, visibility_timeout_s=1.0
)(_run_blocking)


def _run_in_thread(job: Job[Task]) -> dict[str, object]:
    """A plain def handler: it runs in a thread, so it may block."""
    time.sleep(job.data.sleep_ms / 1000)  # the job's blocking work, in its thread
    ledger.record([job.id])
    return {"n": job.data.n, "thread": threading.current_thread().name}


run_thread_task = function("thread-tasks", input=Task, concurrency=2, timeout_s=0.5)(_run_in_thread)

FUNCTIONS = (
    run_task,
    run_batch,
    run_fair_batch,
    run_slow_task,
    run_long_task,
    run_retry_task,
    run_batch_retrying,
    run_windowed_batch,
    run_limited_task,
    run_spread_limited_task,
    run_tier_task,
    run_doomed_task,
    run_blocking_task,
    run_thread_task,
)
