"""Rate limits at run time: override a function's limits for all or one workspace (a tier),
and read the per-workspace record of deferred jobs. Overrides live in Redis, so every
worker applies them at its next read, without a restart."""

from __future__ import annotations

from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.global_limit import set_global_limit
from sluice.streams.ratelimit import (
    GLOBAL,
    Deferral,
    DeferralEvent,
    deferral_history,
    deferrals,
    set_limit,
)


class Limits:
    """Overrides for any function: one declared without a rate is checked while an
    override exists (its workers look about once a second, and before their first
    read)."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def set_global(self, function: str, rate_per_s: float | None) -> None:
        """All workspaces together; None goes back to the declared rate. With several
        partitions the function's own limiter holds it (streams.global_limit)."""
        partitions = self.registry.partitions(function, cluster=is_cluster(self.redis))
        if len(partitions) > 1:
            await set_global_limit(self.redis, function, rate_per_s)
            # A share per partition, as releases before kept it, is no longer read.
            for keys in partitions:
                await set_limit(self.redis, keys, GLOBAL, None)
        else:
            await set_limit(self.redis, partitions[0], GLOBAL, rate_per_s)

    async def set_workspace(self, function: str, workspace: str, rate_per_s: float | None) -> None:
        """One workspace's own rate (its tier); None goes back to the declared rate."""
        (keys,) = self.registry.partitions(function, workspace, cluster=is_cluster(self.redis))
        await set_limit(self.redis, keys, workspace, rate_per_s)

    async def deferrals(self, function: str) -> dict[str, Deferral]:
        """Per workspace: jobs deferred so far, when last, how many it asked for, which limit."""
        found: dict[str, Deferral] = {}
        for keys in self.registry.partitions(function, cluster=is_cluster(self.redis)):
            found.update(await deferrals(self.redis, keys))
        return found

    async def history(self, function: str, workspace: str) -> list[DeferralEvent]:
        """The workspace's last seconds with deferrals (up to `sluice.streams.ratelimit.HISTORY`),
        newest first."""
        (keys,) = self.registry.partitions(function, workspace, cluster=is_cluster(self.redis))
        return await deferral_history(self.redis, keys, workspace)
