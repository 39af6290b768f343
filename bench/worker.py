"""Worker processes for the benchmark, and waiting for their completions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from sluice.streams.connection import Redis
from sluice.streams.jobs import counts
from sluice.streams.keys import PartitionKeys

SPEC = "bench.functions:FUNCTIONS"


def start_worker(
    url: str,
    functions: str,
    extra: dict[str, str],
    *,
    scheduler: bool = False,
    wrapper: tuple[str, ...] = (),
    processes: int = 1,
) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    environ.update(REDIS_URL=url, SLUICE_FUNCTIONS=SPEC, SLUICE_LOG_LEVEL="WARNING", **extra)
    args = [*wrapper, sys.executable, "-m", "sluice", "worker", "--functions", functions]
    if processes > 1:
        args += ["--processes", str(processes)]
    if not scheduler:
        # Workers promote by default; the figures without one stay comparable.
        args.append("--no-scheduler")
    return subprocess.Popen(args, env=environ)


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)


async def until_completed(redis: Redis, keys: PartitionKeys, n: int, poll_s: float) -> int:
    """Wait for `n` completions; the count lives in Redis, written by the worker process."""
    while (done := (await counts(redis, keys)).completed) < n:  # noqa: ASYNC110
        await asyncio.sleep(poll_s)
    return done


async def completed(redis: Redis, parts: list[PartitionKeys]) -> int:
    """Jobs completed over the partitions `parts`."""
    return sum([(await counts(redis, keys)).completed for keys in parts])


async def until_all_completed(
    redis: Redis, parts: list[PartitionKeys], n: int, poll_s: float
) -> int:
    """`until_completed` over several partitions."""
    while (done := await completed(redis, parts)) < n:  # noqa: ASYNC110
        await asyncio.sleep(poll_s)
    return done
