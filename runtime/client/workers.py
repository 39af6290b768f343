"""The workers reading a function, as its consumer groups see them.

A worker process reads every partition of a function under one consumer name
(runtime.worker.host), so it is listed once: the entries it holds summed over
the partitions, its last read the most recent of them. A worker that died stays
listed, its idle time growing, until its group forgets it.
"""

from __future__ import annotations

from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.consumers import Consumer, consumers


class Workers:
    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def read(self, function: str) -> list[Consumer]:
        """The function's consumers, most recently seen first."""
        merged: dict[str, Consumer] = {}
        for keys in self.registry.partitions(function, cluster=is_cluster(self.redis)):
            for c in await consumers(self.redis, keys):
                seen = merged.get(c.name)
                merged[c.name] = c if seen is None else Consumer(
                    c.name, seen.pending + c.pending, min(seen.idle_ms, c.idle_ms)
                )  # fmt: skip
        return sorted(merged.values(), key=lambda c: (c.idle_ms, c.name))
