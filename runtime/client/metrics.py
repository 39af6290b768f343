"""Job metrics read summed over partitions, and reset: what the workers flushed
(runtime.worker.recorder).

Per function and per workspace: jobs processed, succeeded, failed, retried, dead,
rate-limited and expired; handler calls (batches) with their average and p95
time; jobs processed in the last minute; when the last one was processed. Per
function: jobs processed and failed in each minute of the last hour.
"""

from __future__ import annotations

import time

import msgspec

from sluice.runtime.registry import Registry
from sluice.streams import metrics as store
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import check_token
from sluice.streams.ratelimit import forget_deferrals


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


class Histogram(msgspec.Struct, frozen=True):
    """Counts per bucket, not cumulative: one per bound (ms), then one past the last."""

    bounds_ms: tuple[int, ...]
    counts: list[int]
    sum_ms: int


class Histograms(msgspec.Struct, frozen=True):
    """A function's whole-deployment histograms, for Prometheus."""

    # Handler call time (a job, or a batch).
    duration: Histogram
    # From publish to completion (a job published for later counts its delay).
    latency: Histogram
    # From a job's due time (published for later, retried, deferred) to its handler's start.
    lateness: Histogram


class Minute(msgspec.Struct, frozen=True):
    """Jobs of one minute (as the workers' clocks count it)."""

    at_ms: int
    processed: int
    # Attempts that ended in an error (retried or dead).
    failed: int


class Metrics:
    """Read and reset the metrics of the functions in `registry`."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def read(self, function: str, workspace: str | None = None) -> Snapshot:
        """The function's metrics, or one workspace's, summed over partitions."""
        return _snapshot(await self._tally(function, workspace))

    async def read_with_histograms(self, function: str) -> tuple[Snapshot, Histograms]:
        """The function's metrics and histograms, from one read of each partition."""
        tally = await self._tally(function, None)
        c = tally.counters
        return _snapshot(tally), Histograms(
            duration=Histogram(store.BUCKETS_MS, tally.histogram, c["time_ms"]),
            latency=Histogram(store.WAIT_BUCKETS_MS, tally.latency, c["latency_ms"]),
            lateness=Histogram(store.WAIT_BUCKETS_MS, tally.lateness, c["lateness_ms"]),
        )

    async def history(self, function: str) -> list[Minute]:
        """The function's jobs per minute over the last hour, oldest first, the
        current (partial) minute last; minutes without jobs as zeros."""
        minutes = (await self._tally(function, None)).minutes
        now = int(time.time()) // 60
        return [
            Minute(m * 60_000, *minutes.get(m, (0, 0)))
            for m in range(now - store.HOUR + 1, now + 1)
        ]

    async def _tally(self, function: str, workspace: str | None) -> store.Tally:
        scope = store.FUNCTION_SCOPE if workspace is None else check_token("workspace", workspace)
        now_s = int(time.time())
        tally: store.Tally | None = None
        for keys in self.registry.partitions(function, workspace, cluster=is_cluster(self.redis)):
            part = await store.read_tally(self.redis, keys, scope, now_s)
            tally = part if tally is None else tally + part
        assert tally is not None
        return tally

    async def reset(self, function: str, workspace: str | None = None) -> None:
        """Forget the function's metrics (every workspace's too), or one workspace's,
        with the record and history of its rate-limit deferrals (`Limits`): they
        count the same events as `rate_limited`. The limits themselves stay."""
        for keys in self.registry.partitions(function, workspace, cluster=is_cluster(self.redis)):
            await store.reset(self.redis, keys, workspace)
            await forget_deferrals(self.redis, keys, workspace)


def _snapshot(tally: store.Tally) -> Snapshot:
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
        p95_ms=p95(tally.histogram),
        last_minute=tally.last_minute,
        last_ms=tally.last_ms,
    )


def p95(histogram: list[int]) -> float:
    """The upper bound (ms) of the call-time bucket holding the 95th percentile (0: no calls)."""
    total = sum(histogram)
    if not total:
        return 0.0
    seen = 0
    # A p95 past the last bound is shown as that bound.
    for bound, count in zip((*store.BUCKETS_MS, store.BUCKETS_MS[-1]), histogram, strict=True):
        seen += count
        if seen >= 0.95 * total:
            return float(bound)
    return float(store.BUCKETS_MS[-1])
