"""Job metrics as each worker counts them: tallied per job, flushed to Redis about once a second.

What is counted, per function and per workspace, is read back summed by the
client's `Metrics` (runtime.client.metrics).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from typing import NoReturn, assert_never

from runtime.guard import Guard
from runtime.health import RedisHealth
from streams import metrics as store
from streams.connection import Redis
from streams.keys import PartitionKeys
from streams.settle import Completed, Dead, Deferred, Expired, Outcome, Retried

FLUSH_INTERVAL_S = 1.0
# Flushes kept through an outage (ten minutes' worth); older ones are dropped.
UNSENT_LIMIT = 600

# What each outcome counts as: "processed" first where it counts.
_SUCCEEDED = ("processed", "succeeded")
_RETRIED = ("processed", "failed", "retried")
_DEAD = ("processed", "failed", "dead")
_DEFERRED = ("rate_limited",)
_EXPIRED = ("expired",)


class Recorder:
    """One partition loop's metrics since its last flush.

    Kept as plain tallies by (workspace, what an outcome counts as) and
    (workspace, time bucket): one dict update per job and per call on the hot
    path; field names, the function-wide scope and the per-second ring are made
    at flush time.
    """

    def __init__(self) -> None:
        self.states: collections.Counter[tuple[str, tuple[str, ...]]] = collections.Counter()
        self.calls: collections.Counter[tuple[str, int]] = collections.Counter()
        self.time_ms: collections.Counter[str] = collections.Counter()
        # Taken but not yet written (Redis was away), oldest first.
        self.unsent: list[store.Batch] = []

    def call(self, workspace: str, duration_s: float) -> None:
        """A handler call (a batch, or one job) and how long it took."""
        ms = duration_s * 1000
        self.calls[(workspace, store.bucket_of(ms))] += 1
        self.time_ms[workspace] += round(ms)

    def settled(self, outcomes: Sequence[Outcome], fenced: set[str]) -> None:
        states = self.states
        counted: tuple[str, ...]
        for o in outcomes:
            if o.entry_id in fenced:
                continue
            match o:
                case Completed():
                    counted = _SUCCEEDED
                case Retried():
                    counted = _RETRIED
                case Dead():
                    counted = _DEAD
                case Deferred():
                    counted = _DEFERRED
                case Expired():
                    counted = _EXPIRED
                case _:
                    assert_never(o)
            states[(o.workspace, counted)] += 1

    def take(self) -> store.Batch:
        """Everything since the last take, as the fields `streams.metrics.flush` adds."""
        now = time.time()
        counts: collections.Counter[str] = collections.Counter()
        processed: collections.Counter[str] = collections.Counter()
        for (workspace, counters), n in self.states.items():
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
) -> NoReturn:
    await Guard(health, f"{keys}: metrics flush").every(
        FLUSH_INTERVAL_S, lambda: flush_once(client, keys, recorder)
    )
