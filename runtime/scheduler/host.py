"""The scheduler: promotes due jobs from every function partition's delayed set.

It sleeps until the earliest due time it knows (not a fixed poll), is woken
early when a job falls due sooner, and re-checks every partition at a bounded
interval in case a wake-up was lost. Due times are Redis's clock: the promote
script says how long until the next one, so host clock skew does not matter.
Promotion is one atomic script per partition, so any number of schedulers may
run (inside workers too); none promotes a job twice.

It also publishes the ticks of repeatable jobs (runtime.scheduler.ticks), re-read every
re-check interval. Which ticks are next is judged by Redis's clock too: by its own,
a scheduler 5 minutes ahead would make none of the next 5 minutes' ticks, and one
5 minutes behind none until its clock reached the schedule's first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sluice.runtime.declare import Function
from sluice.runtime.guard import Guard
from sluice.runtime.health import RedisHealth
from sluice.runtime.lifecycle import stop_task
from sluice.runtime.registry import partition_keys
from sluice.runtime.scheduler.ticks import upcoming_ticks
from sluice.runtime.telemetry import tracing
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.delayed import promote_due
from sluice.streams.publish import Outgoing, publish
from sluice.streams.repeats import load_schedules
from sluice.streams.sweep import redis_ms
from sluice.streams.wake import WakeListener

log = logging.getLogger(__name__)

# Jobs one promote call moves at most, so a burst of due jobs does not hold
# Redis (single-threaded) for long; a partition with more is called again at once.
PROMOTE_BATCH = 1000


class Scheduler:
    """Promotes due jobs of `functions` until stopped."""

    def __init__(
        self,
        client: Redis,
        functions: Sequence[Function[Any]],
        health: RedisHealth,
        recheck_s: float,
    ) -> None:
        self.client = client
        self.health = health
        self.recheck_s = recheck_s
        self.partitions = {
            keys.wake: keys
            for fn in functions
            for keys in (
                partition_keys(fn, p, is_cluster(client)) for p in range(fn.options.partitions)
            )
        }
        self.shares = {fn.name: fn.options.share for fn in functions}
        # Loop time at which each partition (by wake channel) is next promoted.
        self.due_at = dict.fromkeys(self.partitions, 0.0)
        # Loop time at which schedules are next read, and the ticks published so
        # far (job ids), so an unchanged schedule costs no publish.
        self.ticks_at = 0.0
        self.published: set[str] = set()
        # When (Redis time, ms) schedules were last read: the next read publishes the
        # ticks due since then too, those of a schedule made in between.
        self.read_ms: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        if not self.partitions:
            return
        # Promotion holds no state between calls: cancelling it at stop loses nothing.
        task = asyncio.create_task(self._forever())
        await stop.wait()
        await stop_task(task)

    async def _forever(self) -> None:
        loop = asyncio.get_running_loop()
        listener = WakeListener(self.client, list(self.partitions))
        guard = Guard(self.health, "scheduler: promotion")
        try:
            while True:
                try:
                    if loop.time() >= self.ticks_at:
                        await self._publish_ticks()
                        self.ticks_at = loop.time() + self.recheck_s
                    await self._promote_due_partitions(loop.time())
                    sleep_s = min(self.ticks_at, *self.due_at.values()) - loop.time()
                    woken = await listener.wait(max(0.0, min(sleep_s, self.recheck_s)))
                except Exception as exc:
                    # Even an error Redis may get over (out of memory): keep scheduling.
                    await guard.pause(exc)
                    continue
                guard.ok()
                self.health.did("promote")
                for channel in woken:
                    if channel in self.due_at:
                        self.due_at[channel] = 0.0
        finally:
            await listener.close()

    async def _promote_due_partitions(self, now: float) -> None:
        for channel, at in self.due_at.items():
            if at > now:
                continue
            keys = self.partitions[channel]
            while True:
                promoted = await promote_due(
                    self.client,
                    keys,
                    PROMOTE_BATCH,
                    self.shares[keys.function],
                    tracing.enabled(),
                )
                tracing.promoted(keys.function, promoted.traces)
                if promoted.moved:
                    log.debug("%s: promoted %d due jobs", keys, promoted.moved)
                if promoted.moved < PROMOTE_BATCH:
                    break
            wait_s = self.recheck_s
            if promoted.next_due_in_ms is not None:
                wait_s = min(wait_s, promoted.next_due_in_ms / 1000)
            self.due_at[channel] = asyncio.get_running_loop().time() + wait_s

    async def _publish_ticks(self) -> None:
        """Publish the coming ticks of every schedule not yet published by this process."""
        # Redis's clock, as every scheduler reads the same one: a host's clock off
        # by minutes would pick other ticks (runtime.scheduler.ticks).
        now_ms, since_ms = await redis_ms(self.client), self.read_ms
        # Set before the reads: a read that fails looks back no further than this
        # one, so an outage's ticks are not made up (runtime.scheduler.ticks).
        self.read_ms = now_ms
        published: set[str] = set()
        for keys in self.partitions.values():
            ticks: list[Outgoing] = []
            for schedule in await load_schedules(self.client, keys):
                try:
                    ticks += upcoming_ticks(
                        schedule, keys.function, now_ms, self.recheck_s, since_ms
                    )
                except Exception:
                    # One bad schedule (a zone this host lacks) must not stop the rest.
                    log.exception("%s: schedule %r skipped", keys, schedule.name)
            fresh = [t for t in ticks if t.envelope.id not in self.published]
            if fresh:
                await publish(self.client, keys, fresh, self.shares[keys.function])
            published.update(t.envelope.id for t in ticks)
        # Forget ticks that are no longer next: the set stays as small as the schedules.
        self.published = published
