"""Pause and resume functions at run time: their workers stop starting jobs within
about a second (runtime.worker.reader), and take up where they were on resume."""

from __future__ import annotations

from runtime.registry import Registry
from streams.connection import Redis, is_cluster
from streams.pause import is_paused, set_paused


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
