"""The fault battery's processes: a fleet of workers to kill, and waiting for a drain."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import cast

from redis.asyncio.cluster import RedisCluster

from sluice.runtime import Client, DeadLetters
from sluice.runtime.registry import load, partition_keys
from sluice.streams import envelope as env
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.errors import RedisUnavailable
from sluice.streams.keys import GROUP, PartitionKeys
from tests.chaos.ledger import Fault, History, read_calls
from tests.runtime.helpers import blocked_readers, start_worker, total_counts, wait_until

BATTERY = "tests.chaos.battery_functions:FUNCTIONS"
FUNCTIONS = ("chaos-single", "chaos-batch")


def history_for(redis: Redis, *, timeouts_fail: bool = False) -> History:
    return History(Client(redis, load(BATTERY)), timeouts_fail=timeouts_fail)


class Fleet:
    """Worker processes of the battery's functions, writing their ledgers to
    `folder/ledger/` and their logs to `folder/workers.log`."""

    def __init__(
        self,
        url: str,
        folder: Path,
        history: History,
        *,
        grace_s: float = 5.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.grace_s = grace_s
        # BATTERY_LEDGER, and a control's switch (tests.chaos.battery_functions).
        self.environ = {"SLUICE_FUNCTIONS": BATTERY, "BATTERY_LEDGER": str(folder / "ledger")}
        self.environ |= environ or {}
        self.ledger = folder / "ledger"
        self.ledger.mkdir(exist_ok=True)
        self.log = folder / "workers.log"
        self.history = history
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1, environ: Mapping[str, str] | None = None) -> None:
        """Start `n` workers, with `environ` on top of the fleet's (a skewed clock)."""
        for _ in range(n):
            worker = start_worker(
                self.url,
                # The sample functions' LEDGER_FILE: the battery's handlers use
                # BATTERY_LEDGER (one file per process) instead.
                self.ledger / "unused",
                log=self.log,
                grace_s=self.grace_s,
                environ=self.environ | dict(environ or {}),
            )
            self.live.append(worker)

    async def ready(self, redis: Redis) -> None:
        """Wait until every live worker sits in XREADGROUP on each function."""

        async def reading() -> bool:
            return await blocked_readers(redis) >= len(self.live) * len(FUNCTIONS)

        await wait_until(reading, what="the workers to read")

    async def veteran(self) -> subprocess.Popen[bytes]:
        """The oldest live worker that has run a job (written a ledger line): the
        one a fault should hit, not a replacement still starting."""

        def first() -> subprocess.Popen[bytes] | None:
            ran = (w for w in self.live if (self.ledger / f"{w.pid}.log").exists())
            return next(ran, None)

        async def found() -> bool:
            return first() is not None

        await wait_until(found, what="a worker to run a job")
        worker = first()
        assert worker is not None
        return worker

    async def kill(self, redis: Redis, worker: subprocess.Popen[bytes]) -> Fault:
        """Freeze `worker`, note the jobs it holds, then SIGKILL it: the held jobs are
        exactly those its death can repeat."""
        worker.send_signal(signal.SIGSTOP)
        held = await held_by(redis, worker.pid)
        fault = Fault(worker.pid, time.time_ns(), held)
        worker.kill()
        worker.wait(timeout=10)
        self.live.remove(worker)
        self.history.faults.append(fault)
        return fault

    async def freeze(self, redis: Redis, worker: subprocess.Popen[bytes]) -> Fault:
        """Stop `worker` (SIGSTOP) and leave it so: a zombie. Its held jobs are noted;
        once thawed (SIGCONT) it may end the calls it was running, start none."""
        worker.send_signal(signal.SIGSTOP)
        fault = Fault(worker.pid, time.time_ns(), await held_by(redis, worker.pid), frozen=True)
        self.history.faults.append(fault)
        return fault

    @contextlib.asynccontextmanager
    async def frozen(self, redis: Redis) -> AsyncIterator[frozenset[str]]:
        """Every live worker stopped (SIGSTOP) while the test breaks Redis: yields the
        jobs they hold, the only ones the fault can repeat; thawed on exit."""
        for worker in self.live:
            worker.send_signal(signal.SIGSTOP)
        try:
            yield await held_by(redis)
        finally:
            for worker in self.live:
                worker.send_signal(signal.SIGCONT)

    def terminate(self, worker: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
        """SIGTERM `worker` and wait for its exit code. A fault that promises no
        duplicates: it is recorded with nothing held that may run twice."""
        self.history.faults.append(Fault(worker.pid, time.time_ns(), frozenset()))
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=timeout_s)
        self.live.remove(worker)
        return code

    def replace_crashed(self) -> int:
        """Start a worker for each that died by itself (recorded as a kill); how many."""
        crashed = [w for w in self.live if w.poll() is not None]
        for worker in crashed:
            self.live.remove(worker)
            self.history.faults.append(Fault(worker.pid, time.time_ns()))
        self.start(len(crashed))
        return len(crashed)

    async def close(self, redis: Redis) -> None:
        """Stop every live worker gracefully once it runs (a worker still starting
        has no SIGTERM handler yet); the test fails if one does not exit 0."""
        await self.ready(redis)
        for worker in self.live:
            worker.send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=30) for w in self.live]
        self.live.clear()
        assert codes == [0] * len(codes), f"workers exited with {codes}"

    def abandon(self) -> None:
        """SIGKILL what is left: the end of a failed test."""
        for worker in self.live:
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGCONT)
                worker.kill()
                worker.wait(timeout=10)
        self.live.clear()


async def listeners(redis: Redis, channel: str) -> int:
    """How many connections listen on the sharded channel (PUBSUB SHARDNUMSUB, asked
    of the node that owns it on a cluster)."""
    target = {}
    if isinstance(redis, RedisCluster):
        target = {"target_nodes": redis.get_node_from_key(channel)}
    # redis-py pairs the reply: [(channel, count)].
    ((_, count),) = await redis.execute_command("PUBSUB SHARDNUMSUB", channel, **target)
    return int(count)


def keys_of(redis: Redis, function: str) -> PartitionKeys:
    """The keys of a battery function (one partition) as the runtime lays them out
    on `redis`: a cluster's carry the function's slot tag."""
    (fn,) = load(BATTERY).select([function])
    return partition_keys(fn, 0, is_cluster(redis))


class Schedulers:
    """`sluice scheduler` processes of the battery's functions, to kill and restart;
    their logs go to `folder/schedulers.log`."""

    def __init__(
        self,
        url: str,
        folder: Path,
        history: History,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.history = history
        self.environ = {"SLUICE_FUNCTIONS": BATTERY, **(environ or {})}
        self.log = folder / "schedulers.log"
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1, environ: Mapping[str, str] | None = None) -> None:
        """Start `n` schedulers, with `environ` on top of the others' (a skewed clock)."""
        for _ in range(n):
            env = self.environ | dict(environ or {})
            proc = start_worker(self.url, self.log, role="scheduler", log=self.log, environ=env)
            self.live.append(proc)

    def kill(self, scheduler: subprocess.Popen[bytes]) -> None:
        """SIGKILL `scheduler` (recorded as a fault that holds no job)."""
        self.history.faults.append(Fault(scheduler.pid, time.time_ns(), frozenset()))
        scheduler.kill()
        scheduler.wait(timeout=10)
        self.live.remove(scheduler)

    async def ready(self, redis: Redis) -> None:
        """Wait until every live scheduler listens for wake-ups (SSUBSCRIBE): it runs,
        and a SIGTERM now is a shutdown, not the end of a process still importing."""

        async def listening() -> bool:
            counts = [await listeners(redis, keys_of(redis, f).wake) for f in FUNCTIONS]
            return min(counts) >= len(self.live)

        await wait_until(listening, what="the schedulers to listen")

    def freeze(self) -> None:
        """Stop (SIGSTOP) every live scheduler: nothing is published or promoted
        while the test looks at Redis before a kill."""
        for scheduler in self.live:
            scheduler.send_signal(signal.SIGSTOP)

    async def close(self, redis: Redis) -> None:
        """SIGTERM every live scheduler once it runs; the test fails if one does not
        exit 0."""
        await self.ready(redis)
        for scheduler in self.live:
            scheduler.send_signal(signal.SIGTERM)
        codes = [s.wait(timeout=30) for s in self.live]
        self.live.clear()
        assert codes == [0] * len(codes), f"schedulers exited with {codes}"

    def abandon(self) -> None:
        """SIGKILL what is left: the end of a failed test."""
        for scheduler in self.live:
            if scheduler.poll() is None:
                os.kill(scheduler.pid, signal.SIGCONT)
                scheduler.kill()
                scheduler.wait(timeout=10)
        self.live.clear()


async def held_by(redis: Redis, pid: int | None = None) -> frozenset[str]:
    """The job ids pending for the consumers of process `pid` (runtime.worker.host
    names a consumer host-pid-suffix), or of every process."""
    held = set()
    for function in FUNCTIONS:
        keys = keys_of(redis, function)
        for consumer in await redis.xinfo_consumers(keys.stream, GROUP):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if pid is not None and f"-{pid}-" not in name:
                continue
            pending = await redis.xpending_range(
                keys.stream, GROUP, min="-", max="+", count=100_000, consumername=name
            )
            for entry in pending:
                entry_id = entry["message_id"]
                entries = cast(
                    list[tuple[bytes, dict[bytes, bytes]]],
                    await redis.xrange(keys.stream, entry_id, entry_id),
                )
                held |= {env.decode(fields[b"e"]).id for _, fields in entries}
    return frozenset(held)


async def is_drained(redis: Redis) -> bool:
    """Whether no job of the battery waits, runs or is due later."""
    for function in FUNCTIONS:
        c = await total_counts(redis, function)
        if c.waiting or c.active or c.delayed:
            return False
    return True


async def drained(redis: Redis, timeout_s: float = 60.0) -> None:
    async def empty() -> bool:
        try:
            return await is_drained(redis)
        except RedisUnavailable:
            # The test's own client, on a connection a restarted node closed: the
            # next ask reconnects.
            return False

    await wait_until(empty, timeout_s, what="the battery's queues to drain")


async def dead_ids(redis: Redis) -> set[str]:
    letters = DeadLetters(redis, load(BATTERY))
    return {
        letter.envelope.id
        for function in FUNCTIONS
        for letter in await letters.read(function, limit=100_000)
    }


def effects(fleet: Fleet) -> int:
    """How many job effects (ok lines) the fleet's ledgers hold so far."""
    return sum(1 for c in read_calls(fleet.ledger) if c.outcome == "ok")


async def progressed(fleet: Fleet, n: int, timeout_s: float = 60.0) -> None:
    async def far_enough() -> bool:
        return effects(fleet) >= n

    await wait_until(far_enough, timeout_s, what=f"{n} jobs done")


async def publish_load(history: History, n: int, chunk: int = 20, **data: object) -> None:
    """Publish `n` jobs in chunks, alternately to each battery function, whatever
    becomes of each chunk (a fault in the middle makes some unknown)."""
    for i in range(0, n, chunk):
        function = FUNCTIONS[(i // chunk) % len(FUNCTIONS)]
        await history.publish(function, history.events(min(chunk, n - i), **data))
