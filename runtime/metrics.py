"""Job metrics: counted by each worker, flushed to Redis about once a second, read summed.

Per function and per workspace: jobs processed, succeeded, failed, retried, dead,
rate-limited and expired; handler calls (batches) with their average and p95
time; jobs processed in the last minute; when the last one was processed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence

import msgspec

from runtime.health import RedisHealth
from runtime.registry import Registry
from streams import metrics as store
from streams.connection import Redis
from streams.errors import RedisUnavailable
from streams.keys import PartitionKeys, check_token
from streams.settle import Settlement

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
# Flushes kept through an outage (ten minutes' worth); older ones are dropped.
UNSENT_LIMIT = 600

# What each settlement state counts as.
_COUNTED = {
    "completed": ("processed", "succeeded"),
    "retry": ("processed", "failed", "retried"),
    "dead": ("processed", "failed", "dead"),
    "defer": ("rate_limited",),
    "expired": ("expired",),
}


class Recorder:
    """One partition loop's metrics since its last flush.

    Kept as plain tallies by (workspace, state) and (workspace, time bucket): one
    dict update per job and per call on the hot path; field names, the
    function-wide scope and the per-second ring are made at flush time.
    """

    def __init__(self) -> None:
        self.states: collections.Counter[tuple[str, str]] = collections.Counter()
        self.calls: collections.Counter[tuple[str, int]] = collections.Counter()
        self.time_ms: collections.Counter[str] = collections.Counter()
        # Taken but not yet written (Redis was away), oldest first.
        self.unsent: list[store.Batch] = []

    def call(self, workspace: str, duration_s: float) -> None:
        """A handler call (a batch, or one job) and how long it took."""
        ms = duration_s * 1000
        self.calls[(workspace, store.bucket_of(ms))] += 1
        self.time_ms[workspace] += round(ms)

    def settled(self, settlements: Sequence[Settlement], fenced: set[str]) -> None:
        states = self.states
        for s in settlements:
            if s.entry_id not in fenced:
                states[(s.workspace, s.state)] += 1

    def take(self) -> store.Batch:
        """Everything since the last take, as the fields `streams.metrics.flush` adds."""
        now = time.time()
        counts: collections.Counter[str] = collections.Counter()
        processed: collections.Counter[str] = collections.Counter()
        for (workspace, state), n in self.states.items():
            counters = _COUNTED[state]
            for scope in (workspace, store.FUNCTION_SCOPE):
                for counter in counters:
                    counts[f"{scope}|{counter}"] += n
                if counters[0] == "processed":
                    processed[scope] += n
        for (workspace, bucket), n in self.calls.items():
            for scope in (workspace, store.FUNCTION_SCOPE):
                counts[f"{scope}|batches"] += n
                counts[f"{scope}|h|{bucket}"] += n
        for workspace, ms in self.time_ms.items():
            for scope in (workspace, store.FUNCTION_SCOPE):
                counts[f"{scope}|time_ms"] += ms
        self.states, self.calls, self.time_ms = (
            collections.Counter(),
            collections.Counter(),
            collections.Counter(),
        )
        second = int(now)
        return store.Batch(
            counts=dict(counts),
            ring=[(scope, second, n) for scope, n in processed.items()],
            last=dict.fromkeys(processed, int(now * 1000)),
        )


async def flush_once(client: Redis, keys: PartitionKeys, recorder: Recorder) -> None:
    """Write what the recorder holds, and what earlier flushes could not write."""
    batch = recorder.take()
    if batch.counts:
        recorder.unsent.append(batch)
    # Written oldest first; an outage keeps the rest (a bounded number) for later.
    del recorder.unsent[:-UNSENT_LIMIT]
    while recorder.unsent:
        await store.flush(client, keys, recorder.unsent[0])
        recorder.unsent.pop(0)


async def flush_forever(
    client: Redis, keys: PartitionKeys, recorder: Recorder, health: RedisHealth
) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        try:
            await flush_once(client, keys, recorder)
        except RedisUnavailable as exc:
            health.down(exc)
        except Exception:
            log.exception("%s: metrics flush failed", keys)


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
        for keys in self.registry.partitions(function, workspace):
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
        for keys in self.registry.partitions(function, workspace):
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
