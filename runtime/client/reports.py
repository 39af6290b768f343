"""A workspace's delivery figures between two moments, for `report.generate`.

The metrics hash keeps running totals (streams.metrics), not a history, so a
period's figures are the difference of two readings: `usage` reads them now,
and `period` subtracts the reading the previous report kept. A reading lower
than the one before (the metrics were reset meanwhile) counts from zero.
"""

from __future__ import annotations

import time

import msgspec

from sluice.runtime.client.metrics import p95
from sluice.runtime.registry import Registry
from sluice.streams import metrics as store
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import check_token


class Usage(msgspec.Struct, frozen=True):
    """One function's running totals for a workspace: counters and call-time buckets."""

    counters: dict[str, int]
    histogram: list[int]


class Line(msgspec.Struct, frozen=True):
    """One function's figures over a period."""

    function: str
    processed: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    expired: int
    # Jobs the rate limits held back (a job deferred twice counts twice).
    rate_limited: int
    calls: int
    avg_ms: float
    # Upper bound of the call-time bucket holding the 95th percentile call.
    p95_ms: float


class Reports:
    """Read the figures of the functions in `registry` for reports."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def usage(self, workspace: str) -> dict[str, Usage]:
        """Every function's running totals for `workspace`, summed over partitions."""
        check_token("workspace", workspace)
        now_s = int(time.time())
        found = {}
        for fn in self.registry:
            tally: store.Tally | None = None
            for keys in self.registry.partitions(
                fn.name, workspace, cluster=is_cluster(self.redis)
            ):
                part = await store.read_tally(self.redis, keys, workspace, now_s)
                tally = part if tally is None else tally + part
            assert tally is not None
            found[fn.name] = Usage(tally.counters, tally.histogram)
        return found


def period(function: str, now: Usage, before: Usage | None) -> Line:
    """`function`'s figures between reading `before` (None: since counting began) and `now`."""
    if before is not None and any(now.counters.get(c, 0) < n for c, n in before.counters.items()):
        before = None  # reset meanwhile: what there is now came after
    was = before.counters if before is not None else {}
    c = {name: n - was.get(name, 0) for name, n in now.counters.items()}
    histogram = (
        now.histogram
        if before is None or len(before.histogram) != len(now.histogram)
        else [a - b for a, b in zip(now.histogram, before.histogram, strict=True)]
    )
    calls = c.get("batches", 0)
    return Line(
        function=function,
        processed=c.get("processed", 0),
        succeeded=c.get("succeeded", 0),
        failed=c.get("failed", 0),
        retried=c.get("retried", 0),
        dead=c.get("dead", 0),
        expired=c.get("expired", 0),
        rate_limited=c.get("rate_limited", 0),
        calls=calls,
        avg_ms=round(c.get("time_ms", 0) / calls, 1) if calls else 0.0,
        p95_ms=p95(histogram),
    )
