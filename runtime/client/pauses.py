"""Pause and resume functions at run time: once `pause` returned, workers start no
job they read afterwards, only those read before (runtime.worker.reader); on
resume they take up where they were, within about a second."""

from __future__ import annotations

from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.pause import is_paused, set_paused


class Pauses:
    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def pause(self, function: str) -> None:
        for keys in self.registry.partitions(function, cluster=is_cluster(self.redis)):
            await set_paused(self.redis, keys, True)

    async def resume(self, function: str) -> None:
        for keys in self.registry.partitions(function, cluster=is_cluster(self.redis)):
            await set_paused(self.redis, keys, False)

    async def paused(self, function: str) -> bool:
        return await is_paused(
            self.redis, self.registry.partitions(function, cluster=is_cluster(self.redis))[0]
        )
