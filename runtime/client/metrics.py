"""Job metrics read summed over partitions, and reset: what the workers flushed
(runtime.worker.recorder).

Per function and per workspace: jobs processed, succeeded, failed, retried, dead,
rate-limited and expired; handler calls (batches) with their average and p95
time; jobs processed in the last minute; when the last one was processed.
"""

from __future__ import annotations

import time

import msgspec

from runtime.registry import Registry
from streams import metrics as store
from streams.connection import Redis, is_cluster
from streams.keys import check_token


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    processed: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    rate_limited: int
    expired: int
    batches: int
    avg_ms: float
    # Upper bound of the histogram bucket holding the 95th percentile call.
    p95_ms: float
    last_minute: int
    # Epoch ms of the last job processed (0: none yet).
    last_ms: int


class Metrics:
    """Read and reset the metrics of the functions in `registry`."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def read(self, function: str, workspace: str | None = None) -> Snapshot:
        """The function's metrics, or one workspace's, summed over partitions."""
        scope = store.FUNCTION_SCOPE if workspace is None else check_token("workspace", workspace)
        now_s = int(time.time())
        tally: store.Tally | None = None
        for keys in self.registry.partitions(function, workspace, cluster=is_cluster(self.redis)):
            part = await store.read_tally(self.redis, keys, scope, now_s)
            tally = part if tally is None else tally + part
        assert tally is not None
        c = tally.counters
        return Snapshot(
            processed=c["processed"],
            succeeded=c["succeeded"],
            failed=c["failed"],
            retried=c["retried"],
            dead=c["dead"],
            rate_limited=c["rate_limited"],
            expired=c["expired"],
            batches=c["batches"],
            avg_ms=c["time_ms"] / c["batches"] if c["batches"] else 0.0,
            p95_ms=_p95(tally.histogram),
            last_minute=tally.last_minute,
            last_ms=tally.last_ms,
        )

    async def reset(self, function: str, workspace: str | None = None) -> None:
        """Forget the function's metrics (every workspace's too), or one workspace's."""
        for keys in self.registry.partitions(function, workspace, cluster=is_cluster(self.redis)):
            await store.reset(self.redis, keys, None if workspace is None else workspace)


def _p95(histogram: list[int]) -> float:
    total = sum(histogram)
    if not total:
        return 0.0
    seen = 0
    for bound, count in zip(store.BUCKETS_MS, histogram, strict=True):
        seen += count
        if seen >= 0.95 * total:
            return float(bound)
    return float(store.BUCKETS_MS[-1])
