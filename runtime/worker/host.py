"""The worker host: one partition loop per function partition, in one TaskGroup."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

from sluice.runtime.catalogue import announce
from sluice.runtime.declare import Function
from sluice.runtime.guard import Guard
from sluice.runtime.health import RedisHealth
from sluice.runtime.settings import Settings, use_settings
from sluice.runtime.worker.drains import Drains
from sluice.runtime.worker.isolation import Gate
from sluice.runtime.worker.loop import LoopConfig, PartitionLoop
from sluice.runtime.worker.stall import Claims, StallWatch
from sluice.streams.connection import Redis

log = logging.getLogger(__name__)


def consumer_name() -> str:
    """Unique per process, readable in XINFO: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WorkerHost:
    """Runs the handlers of `functions` until `stop` is set, then shuts down gracefully."""

    def __init__(
        self,
        client: Redis,
        functions: Sequence[Function[Any]],
        settings: Settings,
        health: RedisHealth,
    ) -> None:
        config = LoopConfig(
            consumer=settings.consumer or consumer_name(),
            block_ms=settings.block_ms,
            reclaim_interval_s=settings.reclaim_interval_s,
            grace_s=settings.grace_s,
        )
        self.consumer = config.consumer
        self.redis = settings.redis
        self.settings = settings
        self.client, self.functions, self.health = client, functions, health
        # One for the process: a crash takes every function's calls in it.
        gate = Gate()
        self.loops = [
            PartitionLoop(client, fn, partition, config, health, gate)
            for fn in functions
            for partition in range(fn.options.partitions)
        ]
        # The partitions of the functions' earlier partition counts, while jobs are left there.
        self.drains = Drains(client, functions, config, health, gate)

    async def run(self, stop: asyncio.Event) -> None:
        names = sorted({loop.fn.name for loop in self.loops})
        log.info("worker %s consuming %s", self.consumer, ", ".join(names))
        # The handlers read their settings (runtime.current_settings) from this task's context.
        use_settings(self.settings)
        for fn in {loop.fn.name: loop.fn for loop in self.loops}.values():
            if fn.on_start is not None:
                fn.on_start()
        watch = StallWatch(
            self.redis,
            self._claims,
            self._running,
            min((loop.fn.options.visibility_timeout_s for loop in self.loops), default=60) / 3,
        )
        watch.start(asyncio.get_running_loop())
        try:
            async with asyncio.TaskGroup() as group:
                # The catalogue publishers read (runtime.catalogue): once Redis takes it.
                announcing = Guard(self.health, "writing the function catalogue")
                group.create_task(
                    announcing.until_done(lambda: announce(self.client, self.functions), stop)
                )
                for loop in self.loops:
                    group.create_task(loop.run(stop))
                group.create_task(self.drains.run(stop))
        finally:
            watch.stop()
        log.info("worker %s stopped", self.consumer)

    def _claims(self) -> list[Claims]:
        loops = [*self.loops, *self.drains.loops]
        return [(loop.keys, self.consumer, list(loop.held)) for loop in loops if loop.held]

    def _running(self) -> list[str]:
        return [call for loop in [*self.loops, *self.drains.loops] for call in loop.running()]
