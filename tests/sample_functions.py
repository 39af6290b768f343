"""Handlers for tests: each records what it handled in a ledger file, then acts as told.

The ledger is a file (LEDGER_FILE), not Redis, so it survives Redis being killed
and tells exactly which job ids each process ran, and how often.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Literal

import msgspec

from runtime import Batch, Job, batch_function, function


class Task(msgspec.Struct, frozen=True):
    n: int
    # ok: succeed; raise: fail; hang: outlive the timeout; die: SIGKILL the worker.
    mode: Literal["ok", "raise", "hang", "die", "slow"] = "ok"
    sleep_ms: int = 0
    note: str = ""


class _Ledger:
    def __init__(self) -> None:
        self.path: str | None = None
        self.fd = -1

    def record(self, ids: list[str]) -> None:
        path = os.environ.get("LEDGER_FILE")
        if not path:
            return
        if path != self.path:
            self.path, self.fd = path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        # One O_APPEND write per call: lines of concurrent processes never interleave.
        os.write(self.fd, "".join(f"{i} {os.getpid()}\n" for i in ids).encode())


ledger = _Ledger()


async def _act(task: Task) -> None:
    if task.mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if task.mode == "raise":
        raise ValueError(f"task {task.n} refused")
    if task.mode == "hang":
        await asyncio.Event().wait()
    if task.sleep_ms:
        await asyncio.sleep(task.sleep_ms / 1000)


async def _run(job: Job[Task]) -> None:
    await _act(job.data)
    ledger.record([job.id])


# The single-job functions differ only in their options.
run_task = function(
    "tasks",
    input=Task,
    concurrency=8,
    timeout_s=2.0,
    visibility_timeout_s=2.0,
    max_deliveries=3,
    retention_s=600,
)(_run)
# A 60 s visibility timeout: finishing well within it proves hand-back, not reclaim.
run_slow_task = function(
    "slow-tasks", input=Task, concurrency=4, timeout_s=30.0, visibility_timeout_s=60.0
)(_run)
# A 1 s visibility timeout: a longer job survives only through heartbeats.
run_long_task = function(
    "long-tasks", input=Task, concurrency=2, timeout_s=30.0, visibility_timeout_s=1.0
)(_run)


@batch_function(
    "batch-tasks",
    input=Task,
    batch_size=50,
    concurrency=4,
    timeout_s=2.0,
    visibility_timeout_s=2.0,
    max_deliveries=3,
    partitions=2,
)
async def run_batch(batch: Batch[Task]) -> None:
    done = []
    for job in batch.jobs:
        if job.data.mode == "raise":
            batch.fail(job, f"task {job.data.n} refused")
        else:
            done.append(job.id)
    ledger.record(done)


FUNCTIONS = (run_task, run_batch, run_slow_task, run_long_task)
