"""Job metrics per function partition and workspace, summed in Redis from every worker.

Workers count locally and flush about once a second (`metrics.lua`), so the hot
path pays nothing per job. Fields of the partition's `metrics` HASH are scoped:
"<scope>|<counter>", "<scope>|h|<bucket>" (call-time histogram),
"<scope>|r|<second of the minute>" (throughput ring) and "<scope>|last"; the
scope is a workspace, or "*" for the function as a whole. For the function as a
whole only (bounded, whatever the number of workspaces): "*|lat|<bucket>" and
"*|latency_ms" (publish to completion), "*|late|<bucket>" and "*|lateness_ms"
(due time to handler start), "*|m|<minute of the hour>" (jobs processed and
failed per minute: the last hour's chart).
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys
from sluice.streams.lua import Arg, Script

_FLUSH = Script.beside(__file__, "metrics.lua", allow_oom=True)

FUNCTION_SCOPE = "*"
COUNTERS = (
    "processed", "succeeded", "failed", "retried", "dead", "rate_limited", "expired",
    "batches", "time_ms", "latency_ms", "lateness_ms",
)  # fmt: skip
# Upper bounds (ms) of the call-time histogram's buckets; one more bucket holds
# the slower calls (Prometheus's +Inf).
BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
# Latency and lateness run from milliseconds to an hour behind (a backlog, a
# stopped worker); past the last bound, the +Inf bucket.
WAIT_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                   300_000, 900_000, 3_600_000)  # fmt: skip
# Minutes the per-minute ring keeps.
HOUR = 60


class Tally(msgspec.Struct, kw_only=True):
    """One scope's raw metrics: what partitions add up."""

    counters: dict[str, int]
    # Calls per BUCKETS_MS bucket, then the slower ones.
    histogram: list[int]
    # Jobs per WAIT_BUCKETS_MS bucket, then the later ones (function scope only).
    latency: list[int]
    lateness: list[int]
    last_minute: int = 0
    last_ms: int = 0
    # Epoch minute -> [processed, failed], the last hour's (function scope only).
    minutes: dict[int, list[int]] = msgspec.field(default_factory=dict)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            counters={c: self.counters.get(c, 0) + other.counters.get(c, 0) for c in COUNTERS},
            histogram=_sum(self.histogram, other.histogram),
            latency=_sum(self.latency, other.latency),
            lateness=_sum(self.lateness, other.lateness),
            last_minute=self.last_minute + other.last_minute,
            last_ms=max(self.last_ms, other.last_ms),
            minutes={
                m: _sum(self.minutes.get(m, [0, 0]), other.minutes.get(m, [0, 0]))
                for m in {*self.minutes, *other.minutes}
            },
        )


def _sum(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def bucket_of(duration_ms: float, bounds: tuple[int, ...] = BUCKETS_MS) -> int:
    """The bucket of `duration_ms`: the first bound it does not exceed, else len(bounds)."""
    for i, bound in enumerate(bounds):
        if duration_ms <= bound:
            return i
    return len(bounds)


class Batch(msgspec.Struct, frozen=True):
    """One worker's metrics since its last flush."""

    # Field -> amount to add.
    counts: dict[str, int]
    # (scope, epoch second, jobs processed) for the per-second ring.
    ring: list[tuple[str, int, int]]
    # Scope -> epoch ms of the last job processed.
    last: dict[str, int]
    # (epoch minute, jobs processed, jobs failed) for the function's minute ring.
    minutes: list[tuple[int, int, int]] = []


async def flush(client: Redis, keys: PartitionKeys, batch: Batch) -> None:
    """Add a worker's `batch` to the partition's totals."""
    args: list[Arg] = [len(batch.counts)]
    for field, amount in batch.counts.items():
        args += (field, amount)
    args.append(len(batch.ring))
    for scope, second, jobs in batch.ring:
        args += (scope, second, jobs)
    args.append(len(batch.minutes))
    for minute, processed, failed in batch.minutes:
        args += (minute, processed, failed)
    for scope, ms in batch.last.items():
        args += (scope, ms)
    await _FLUSH(client, [keys.metrics], args)


async def read_tally(client: Redis, keys: PartitionKeys, scope: str, now_s: int) -> Tally:
    with wrap_unavailable():
        stored: Any = await client.hgetall(keys.metrics)
    prefix = f"{scope}|".encode()
    counters = dict.fromkeys(COUNTERS, 0)
    histogram = [0] * (len(BUCKETS_MS) + 1)
    waits = {"lat": [0] * (len(WAIT_BUCKETS_MS) + 1), "late": [0] * (len(WAIT_BUCKETS_MS) + 1)}
    minute, last = 0, 0
    minutes: dict[int, list[int]] = {}
    for field, value in stored.items():
        if not field.startswith(prefix):
            continue
        kind, _, rest = field[len(prefix) :].decode().partition("|")
        if kind == "h":
            histogram[int(rest)] = int(value)
        elif kind in waits:
            waits[kind][int(rest)] = int(value)
        elif kind == "r":
            second, _, jobs = value.decode().partition(":")
            if now_s - int(second) < 60:
                minute += int(jobs)
        elif kind == "m":
            at, processed, failed = (int(n) for n in value.decode().split(":"))
            if now_s // 60 - at < HOUR:
                minutes[at] = [processed, failed]
        elif kind == "last":
            last = int(value)
        elif kind in counters:
            counters[kind] = int(value)
    return Tally(
        counters=counters,
        histogram=histogram,
        latency=waits["lat"],
        lateness=waits["late"],
        last_minute=minute,
        last_ms=last,
        minutes=minutes,
    )


async def reset(client: Redis, keys: PartitionKeys, scope: str | None) -> None:
    """Forget the metrics of one scope, or (None) all of the partition's."""
    with wrap_unavailable():
        if scope is None:
            await client.delete(keys.metrics)
            return
        stored: Any = await client.hkeys(keys.metrics)
        mine = [f for f in stored if f.startswith(f"{scope}|".encode())]
        if mine:
            await client.hdel(keys.metrics, *mine)
