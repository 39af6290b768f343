"""Worker processes, ledgers and waiting, for runtime and chaos tests."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio.cluster import RedisCluster

from sluice.runtime.declare import Function
from sluice.runtime.health import RedisHealth
from sluice.runtime.registry import Registry, load
from sluice.runtime.settings import from_env
from sluice.runtime.testing import running
from sluice.streams.connection import Redis, RedisSettings, is_cluster
from sluice.streams.jobs import Counts, counts
from sluice.streams.keys import PartitionKeys

SAMPLE = "tests.sample_functions:FUNCTIONS"


def start_worker(
    url: str | None,
    ledger: Path,
    *,
    functions: str = "",
    grace_s: float = 5.0,
    log: Path | None = None,
    role: str = "worker",
    options: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A `sluice worker` (or other `role`) process running the sample functions, with
    command-line `options` and extra `environ` variables."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")},
        # None: no REDIS_URL (the Redis settings come from `environ`).
        **({} if url is None else {"REDIS_URL": url}),
        "LEDGER_FILE": str(ledger),
        "SLUICE_FUNCTIONS": SAMPLE,
        "SLUICE_BLOCK_MS": "500",
        "SLUICE_RECLAIM_INTERVAL_S": "0.3",
        "SLUICE_GRACE_S": str(grace_s),
        "SLUICE_REDIS_SOCKET_TIMEOUT_S": "2",
        "SLUICE_REDIS_CONNECT_TIMEOUT_S": "0.5",
        **(environ or {}),
    }
    args = [sys.executable, "-m", "sluice", role, *options]
    if functions:
        args += ["--functions", functions]
    if log is None:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=out)


async def blocked_readers(redis: Redis) -> int:
    """How many connections sit in XREADGROUP: workers ready for work.

    Redis creates a group consumer only once it delivers to it, so the consumer
    list cannot tell that a worker is waiting; the client list can.
    """
    return sum(1 for c in await every_client(redis) if c.get("cmd") == "xreadgroup")


async def every_client(redis: Redis) -> list[dict[str, str]]:
    """The connections of every primary: a cluster client asks one node unless told."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()
        # Asked of several nodes, redis-py answers a dict of each node's list.
        by_node: Any = await redis.client_list(target_nodes=RedisCluster.PRIMARIES)
        return [c for clients in by_node.values() for c in clients]
    return await redis.client_list()


async def subscribed_schedulers(redis: Redis) -> int:
    """How many connections sit subscribed to wake channels: schedulers past their
    start-up (a scheduler's process, SIGTERMed before it set its handlers, dies of
    the signal); one a scheduler of one-partition functions."""
    return sum(1 for c in await every_client(redis) if c.get("cmd") == "ssubscribe")


def read_ledger(path: Path) -> collections.Counter[str]:
    """How often each job id was handled."""
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in path.read_text().splitlines())


def ledger_order(path: Path) -> list[str]:
    """The job ids of the ledger in the order their calls finished."""
    return [line.split()[0] for line in path.read_text().splitlines()]


def ledger_pids(path: Path) -> set[str]:
    return {line.split()[1] for line in path.read_text().splitlines()}


def keys_for(redis: Redis, function: str, workspace: str) -> PartitionKeys:
    """The keys of the partition holding `workspace`'s jobs of sample `function`, as
    the runtime lays them out on `redis` (a cluster's are spread)."""
    (keys,) = load(SAMPLE).partitions(function, workspace, cluster=is_cluster(redis))
    return keys


async def total_counts(redis: Redis, function: str, partitions: int = 1) -> Counts:
    spread = partitions if is_cluster(redis) else 0  # as runtime.registry.partition_keys
    parts = [await counts(redis, PartitionKeys(function, p, spread)) for p in range(partitions)]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, what: str = "condition"
) -> None:
    """Poll `check` every 20 ms until true; fail the test after `timeout_s`.

    The events waited on (a job settled in another process) are only visible in
    Redis, so a short poll is the way to await them.
    """
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110 - the event lives in Redis
                await asyncio.sleep(0.02)
    except TimeoutError:
        dump_tasks()
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def dump_tasks() -> None:
    """What every task is doing, for the report: a hang shows where it waits."""
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=sys.stderr)


@contextlib.asynccontextmanager
async def worker_in_process(
    url: str, *names: str, grace_s: float = 5.0, scheduler: bool = False, recheck_s: float = 1.0
) -> AsyncIterator[RedisHealth]:
    """A WorkerHost (and a Scheduler) of the sample functions on this event loop."""
    functions = load(SAMPLE).select(names)
    async with hosting(
        url, functions, grace_s=grace_s, scheduler=scheduler, recheck_s=recheck_s
    ) as health:
        yield health


@contextlib.asynccontextmanager
async def hosting(
    url: str,
    functions: Sequence[Function[Any]],
    environ: Mapping[str, str] | None = None,
    *,
    grace_s: float = 5.0,
    scheduler: bool = False,
    recheck_s: float = 1.0,
    health: RedisHealth | None = None,
    registry: Registry | None = None,
) -> AsyncIterator[RedisHealth]:
    """A WorkerHost of `functions` (and a Scheduler) on this event loop, with its own
    client and the settings `environ` gives; stopped on exit. Its handlers'
    `current_client()` publishes to `registry` (default: `functions`)."""
    settings = from_env(
        environ or {},
        redis=RedisSettings(url=url, connect_timeout_s=0.5, socket_timeout_s=2.0, retries=1),
        block_ms=500,
        reclaim_interval_s=0.3,
        grace_s=grace_s,
    )
    # The library's (runtime.testing.running), as users' own tests run theirs.
    async with running(
        functions,
        settings=settings,
        scheduler=scheduler,
        recheck_s=recheck_s,
        health=health,
        registry=registry,
    ) as health:
        yield health


async def wait_completed(redis: Redis, function: str, n: int, timeout_s: float = 30.0) -> None:
    """Wait until `n` jobs of `function` (one partition) are completed."""

    async def done() -> bool:
        return (await total_counts(redis, function)).completed == n

    await wait_until(done, timeout_s, what=f"{n} completed jobs of {function}")


async def wait_unavailable(health: RedisHealth) -> None:
    """Wait until the worker has noticed that Redis is gone."""

    async def noticed() -> bool:
        return not health.available

    await wait_until(noticed, what="the worker to notice Redis is unavailable")


class LoopLag:
    """The longest the event loop may have stood still while watched (starved of CPU
    on a busy machine, a GC pause): the longest a short timer's sleep took, which
    holds any stall within it. The worker, the provider server and the test share
    the loop, so the jobs whose rate-limit slots passed meanwhile start together
    after it."""

    TICK_S = 0.01

    def __init__(self) -> None:
        self.max_s = 0.0

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[LoopLag]:
        task = asyncio.create_task(self._watch())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            # The tick is the measure: how much later than asked the loop woke.
            await asyncio.sleep(self.TICK_S)
            self.max_s = max(self.max_s, loop.time() - before)
