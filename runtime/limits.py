"""Rate limits at run time: override a function's limits for all or one workspace (a tier),
and read the per-workspace record of deferred jobs. Overrides live in Redis, so every
worker applies them at its next read, without a restart."""

from __future__ import annotations

from runtime.registry import Registry
from streams.connection import Redis
from streams.keys import PartitionKeys, check_token, partition_of
from streams.ratelimit import GLOBAL, Deferral, deferrals, set_limit


class Limits:
    """Overrides for functions declared with a rate limit (`rate_per_s` and/or
    `workspace_rate_per_s`); functions without one never check."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def set_global(self, function: str, rate_per_s: float | None) -> None:
        """All workspaces together; None goes back to the declared rate."""
        (fn,) = self.registry.select([function])
        share = None if rate_per_s is None else rate_per_s / fn.options.partitions
        for p in range(fn.options.partitions):
            await set_limit(self.redis, PartitionKeys(fn.name, p), GLOBAL, share)

    async def set_workspace(self, function: str, workspace: str, rate_per_s: float | None) -> None:
        """One workspace's own rate (its tier); None goes back to the declared rate."""
        (fn,) = self.registry.select([function])
        part = partition_of(check_token("workspace", workspace), fn.options.partitions)
        await set_limit(self.redis, PartitionKeys(fn.name, part), f"ws:{workspace}", rate_per_s)

    async def deferrals(self, function: str) -> dict[str, Deferral]:
        """Per workspace: jobs deferred so far, when last, how many it asked for, which limit."""
        (fn,) = self.registry.select([function])
        found: dict[str, Deferral] = {}
        for p in range(fn.options.partitions):
            found.update(await deferrals(self.redis, PartitionKeys(fn.name, p)))
        return found
