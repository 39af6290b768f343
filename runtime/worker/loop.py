"""The consume loop of one function partition: read -> take in -> invoke -> settle.

The wiring of its parts and the order they stop in. A reader
(runtime.worker.reader) hands ready calls to `concurrency` lanes
(runtime.worker.lanes) under a watchdog, which hand each job's outcome to a
settler (runtime.worker.settler). Beside them run a heartbeat that extends the
claim on held entries, a reclaimer that takes over entries of lost workers, a
watcher of the pause flag and the run-time limits, and the metrics flush; each
periodic one through `sluice.runtime.guard.Guard`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from sluice.runtime.declare import Function
from sluice.runtime.guard import Guard
from sluice.runtime.health import RedisHealth
from sluice.runtime.lifecycle import stop_task
from sluice.runtime.worker.heartbeat import heartbeat_forever
from sluice.runtime.worker.isolation import Gate
from sluice.runtime.worker.lanes import Lanes
from sluice.runtime.worker.partition import Partition
from sluice.runtime.worker.reader import PAUSE_CHECK_S, Reader
from sluice.runtime.worker.reclaimer import reclaim_forever
from sluice.runtime.worker.recorder import Recorder, flush_forever, flush_once
from sluice.runtime.worker.settler import Settler
from sluice.streams.claims import Held, leave
from sluice.streams.connection import Redis
from sluice.streams.errors import GroupMissing, RedisUnavailable
from sluice.streams.reclaim import stale_after_ms

log = logging.getLogger(__name__)


class LoopConfig(msgspec.Struct, frozen=True, kw_only=True):
    consumer: str
    block_ms: int
    reclaim_interval_s: float
    grace_s: float


class PartitionLoop:
    """Runs one function's handler on one partition's stream until told to stop."""

    def __init__(
        self,
        client: Redis,
        fn: Function[Any],
        partition: int,
        config: LoopConfig,
        health: RedisHealth,
        gate: Gate,
    ) -> None:
        self.fn = fn
        self.config = config
        self.part = part = Partition(client, fn, partition, config.consumer, health)
        self.keys = part.keys
        # Entries read and not yet settled: what the stall watch extends (runtime.worker.stall).
        self.held = part.held
        self.recorder = Recorder()
        self.settler = Settler(part, self.recorder)
        self.lanes = Lanes(part, gate, self.settler, self.recorder)
        self.reader = Reader(part, config.block_ms, self.lanes, self.settler)

    def running(self) -> list[str]:
        """The calls in the lanes now, for a report of a blocked loop (runtime.worker.stall)."""
        return self.lanes.running()

    async def run(self, stop: asyncio.Event) -> None:
        part, opts, reader = self.part, self.fn.options, self.reader
        if not await reader.join(stop):
            return
        watchdog = self.lanes.start()
        settler = asyncio.create_task(self.settler.run(self.lanes.idle))
        heartbeat = asyncio.create_task(heartbeat_forever(part, opts.visibility_timeout_s))
        visibility_ms = int(opts.visibility_timeout_s * 1000)
        reclaimer = asyncio.create_task(
            reclaim_forever(
                part.client,
                part.keys,
                part.consumer,
                part.health,
                min_idle_ms=visibility_ms,
                stale_ms=stale_after_ms(visibility_ms, self.config.block_ms),
                interval_s=self.config.reclaim_interval_s,
                batch_size=opts.batch_size,
                # Past the reader's room: a busy worker never has room for long,
                # and a lost worker's jobs must not wait for its backlog. One
                # worker's worth on top bounds what a pass takes over.
                room=lambda: 2 * reader.capacity - len(part.held),
                accept=reader.accept,
            )
        )
        reading = asyncio.create_task(reader.run())
        pause = asyncio.create_task(
            Guard(part.health, f"{part.keys}: reading the pause flag").every(
                PAUSE_CHECK_S, reader.watch
            )
        )
        metrics = asyncio.create_task(
            flush_forever(part.client, part.keys, self.recorder, part.health, part.consumer)
        )
        await stop.wait()
        await stop_task(pause)
        await self._shut_down(settler, heartbeat, reclaimer, reading, metrics)
        await stop_task(watchdog)

    async def _shut_down(
        self,
        settler: asyncio.Task[None],
        heartbeat: asyncio.Task[None],
        reclaimer: asyncio.Task[None],
        reading: asyncio.Task[None],
        metrics: asyncio.Task[None],
    ) -> None:
        """Stop reading, let running calls finish within the grace period, settle, hand back.

        The order matters: reading stops first so no new work starts; heartbeats
        run until the end so a slow finisher keeps its claims; what never started
        or did not finish in time is handed back without charging an attempt.
        """
        part = self.part
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.grace_s
        self.reader.stop()
        await stop_task(reclaimer)
        # A read in progress returns within BLOCK (and a batching window); what it
        # brings is held, not run.
        await stop_task(
            reading, (self.config.block_ms + self.fn.options.batch_window_ms) / 1000 + 1
        )
        # Jobs waiting for their slot are handed back with the rest.
        await self.reader.drain()
        self.lanes.close()
        _, late = await asyncio.wait(self.lanes.tasks, timeout=max(0.0, deadline - loop.time()))
        await asyncio.gather(*(stop_task(task) for task in late))
        self.settler.close()
        await stop_task(settler, max(1.0, deadline - loop.time()))
        await stop_task(heartbeat)
        await stop_task(metrics)
        try:
            await flush_once(part.client, part.keys, self.recorder)
        except RedisUnavailable:
            log.warning("%s: last metrics not written: Redis is unavailable", part.keys)
        held = [Held(eid, job_id) for eid, job_id in part.held.items()]
        try:
            left = await leave(part.client, part.keys, part.consumer, held)
        except GroupMissing:
            if held:
                log.warning("%s: %d held jobs went with Redis's data", part.keys, len(held))
            return
        except RedisUnavailable as exc:
            if held:
                log.warning(
                    "%s: could not hand back %d jobs (%s); they are reclaimed after %g s",
                    part.keys,
                    len(held),
                    exc,
                    self.fn.options.visibility_timeout_s,
                )
            return
        if left.handed_back:
            log.info("%s: handed back %d unfinished jobs", part.keys, left.handed_back)
