"""Housekeeping over every function partition of a registry (streams.sweep): what
`sluice.cleanup` runs, and a deployment may run from Python."""

from __future__ import annotations

from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.sweep import Swept, purge_dead_before, redis_ms, sweep


class Housekeeping:
    """Remove the data of the functions in `registry` that nothing else bounds."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def clean(self, *, consumer_idle_s: float, deferrals_s: float) -> dict[str, Swept]:
        """Per function, what was removed: dead letters older than the function's
        `dead_retention_s` (the settle trims them only as new ones come, so a
        function that stopped failing kept its old ones), consumers idle
        `consumer_idle_s` that hold nothing, limiter states already past, and
        rate-limit deferral records (with their history) of workspaces not
        deferred for `deferrals_s`. Functions with nothing removed are left out."""
        now_ms = await redis_ms(self.redis)
        removed: dict[str, Swept] = {}
        for fn in self.registry:
            total = Swept()
            dead_before = now_ms - fn.options.dead_retention_s * 1000
            for keys in self.registry.partitions(fn.name, None, cluster=is_cluster(self.redis)):
                total += await sweep(
                    self.redis,
                    keys,
                    consumer_idle_ms=int(consumer_idle_s * 1000),
                    deferrals_before_ms=now_ms - int(deferrals_s * 1000),
                )
                dead = await purge_dead_before(self.redis, keys, int(dead_before))
                total += Swept(dead_letters=dead)
            if total != Swept():
                removed[fn.name] = total
        return removed
