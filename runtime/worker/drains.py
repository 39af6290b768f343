"""Drains the partitions a function's earlier partition counts laid out and its own
count lacks: the jobs stored there when the count changed (streams.layouts).

Every `interval_s` a worker adds its own count to each of its functions' layouts
(a worker of another count still running keeps its own there too, as a rolling
deploy has both) and looks at what is left in each partition of the other counts
that its own layout does not have: on a single server partition p keeps its keys
at any count, so only those past the new count; on a cluster every one whose
spread tag differs. Where jobs are left it runs a partition loop like any other
(read, reclaim lost workers' jobs, settle, refill the backlog) and promotes the
delayed jobs as they fall due; where none are, it stops that loop. A count whose
partitions hold neither jobs nor records (finished ones go with the retention) is
forgotten, unless a partition both counts have may hold jobs of a workspace the
new count maps elsewhere (streams.layouts.held): lookups by business key and tag
still look for them by the old count a while. None of it touches the loops of
the worker's own partitions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from sluice.runtime.declare import Function
from sluice.runtime.guard import Guard
from sluice.runtime.health import RedisHealth
from sluice.runtime.lifecycle import sleep_unless
from sluice.runtime.registry import partition_keys
from sluice.runtime.telemetry import tracing
from sluice.runtime.worker.isolation import Gate
from sluice.runtime.worker.loop import LoopConfig, PartitionLoop
from sluice.streams import layouts
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.delayed import promote_due
from sluice.streams.keys import PartitionKeys

log = logging.getLogger(__name__)

# Delayed jobs one promote call moves at most (as the scheduler's).
PROMOTE_BATCH = 1000


class Drains:
    """Runs loops over `functions`' partitions of earlier layouts until they are empty."""

    def __init__(
        self,
        client: Redis,
        functions: Sequence[Function[Any]],
        config: LoopConfig,
        health: RedisHealth,
        gate: Gate,
    ) -> None:
        self.client, self.functions, self.config = client, functions, config
        self.health, self.gate = health, gate
        self.cluster = is_cluster(client)
        # By tag: the loop draining that partition, its stop, and its task.
        self.running: dict[str, tuple[PartitionLoop, asyncio.Event, asyncio.Task[None]]] = {}

    @property
    def loops(self) -> list[PartitionLoop]:
        # Copied at once (in C, under the GIL): the stall watch asks from its thread.
        return [loop for loop, _, _ in list(self.running.values())]

    async def run(self, stop: asyncio.Event) -> None:
        guard = Guard(self.health, "draining earlier partition layouts")
        try:
            while not stop.is_set():
                try:
                    wait_s = await self._check()
                except Exception as exc:
                    await guard.pause(exc)
                    continue
                guard.ok()
                await sleep_unless(stop, wait_s)
        finally:
            # Each loop hands back what it holds, as the worker's own loops do.
            for _, ended, _ in self.running.values():
                ended.set()
            await asyncio.gather(*(task for _, _, task in self.running.values()))

    async def _check(self) -> float:
        """One look at every earlier layout; returns how long until the next."""
        wait_s = self.config.reclaim_interval_s
        for fn in self.functions:
            counts = await layouts.remember(self.client, fn.name, [fn.options.partitions])
            own = {partition_keys(fn, p, self.cluster).tag for p in range(fn.options.partitions)}
            for count in sorted(counts - {fn.options.partitions}):
                laid = [partition_keys(fn, p, self.cluster, count) for p in range(count)]
                retired = [keys for keys in laid if keys.tag not in own]
                kept = False
                for keys in retired:
                    left = await layouts.left(self.client, keys, int(fn.options.retention_s * 1000))
                    kept = kept or bool(left.work or left.records)
                    if not left.work:
                        self._end(keys)
                        continue
                    self._start(fn, count, keys)
                    if left.due_in_ms == 0:
                        await self._promote(fn, keys)
                        wait_s = 0.0
                    elif left.due_in_ms is not None:
                        wait_s = min(wait_s, left.due_in_ms / 1000)
                if not kept:
                    # Jobs of workspaces the new count maps elsewhere may lie in
                    # partitions both counts have: keys and tags find them by this count.
                    shared = [
                        keys.delayed
                        for keys in laid
                        if keys.tag in own
                        and layouts.strays(keys.partition, count, fn.options.partitions)
                    ]
                    kept = bool(shared) and await layouts.held(self.client, fn.name, count, shared)
                if not kept:
                    log.info("%s: the layout of %d partitions is drained", fn.name, count)
                    await layouts.forget(self.client, fn.name, count)
        return max(0.0, wait_s)

    def _start(self, fn: Function[Any], count: int, keys: PartitionKeys) -> None:
        if keys.tag in self.running:
            return
        log.info("%s: draining jobs left by a layout of %d partitions", keys, count)
        laid_out = Function(
            fn.name,
            fn.input,
            fn.handler,
            msgspec.structs.replace(fn.options, partitions=count),
            batched=fn.batched,
            example=fn.example,
            on_start=fn.on_start,
        )
        loop = PartitionLoop(
            self.client, laid_out, keys.partition, self.config, self.health, self.gate
        )
        ended = asyncio.Event()
        task = asyncio.create_task(loop.run(ended))
        self.running[keys.tag] = (loop, ended, task)
        task.add_done_callback(lambda _: self.running.pop(keys.tag, None))

    def _end(self, keys: PartitionKeys) -> None:
        if (running := self.running.get(keys.tag)) is not None and not running[1].is_set():
            log.info("%s: drained", keys)
            running[1].set()

    async def _promote(self, fn: Function[Any], keys: PartitionKeys) -> None:
        """Move its due jobs into its stream (no scheduler knows this partition)."""
        while True:
            promoted = await promote_due(
                self.client, keys, PROMOTE_BATCH, fn.options.share, tracing.enabled()
            )
            tracing.promoted(fn.name, promoted.traces)
            if promoted.moved < PROMOTE_BATCH:
                return
