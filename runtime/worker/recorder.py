"""Job metrics as each worker counts them: tallied per job, flushed to Redis about once a second.

What is counted, per function and per workspace, is read back summed by the
client's `Metrics` (runtime.client.metrics). The same flush writes when the
calls still running started (streams.started), for active jobs' status.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from typing import NoReturn, assert_never

from sluice.runtime.guard import Guard
from sluice.runtime.health import RedisHealth
from sluice.streams import envelope as env
from sluice.streams import metrics as store
from sluice.streams import settle
from sluice.streams import started as starts
from sluice.streams.connection import Redis
from sluice.streams.errors import RedisFull
from sluice.streams.keys import PartitionKeys
from sluice.streams.settle import Outcome

FLUSH_INTERVAL_S = 1.0
# Flushes kept through an outage (ten minutes' worth); older ones are dropped.
UNSENT_LIMIT = 600

log = logging.getLogger(__name__)


class Recorder:
    """One partition loop's metrics since its last flush.

    Kept as plain tallies by (workspace, kind of outcome) and (workspace, time
    bucket): one dict update per job and per call on the hot path; what each
    kind counts as, field names, the function-wide scope and the per-second ring
    are made at flush time.
    """

    def __init__(self) -> None:
        self.states: collections.Counter[tuple[str, type[Outcome]]] = collections.Counter()
        self.calls: collections.Counter[tuple[str, int]] = collections.Counter()
        self.time_ms: collections.Counter[str] = collections.Counter()
        # Function-wide only (fields bounded whatever the workspaces): "lat" or
        # "late" and bucket -> jobs, and "latency_ms" / "lateness_ms" -> their sum.
        self.waits: collections.Counter[str] = collections.Counter()
        # Taken but not yet written (Redis was away), oldest first.
        self.unsent: list[store.Batch] = []
        # Calls running whose start is not written yet, by their first entry id
        # (unique among a partition's calls): their entry ids and when they
        # started (the event loop's clock, s). One dict entry per call, whatever
        # its batch's size.
        self.running: dict[str, tuple[Sequence[str], float]] = {}

    def call(self, workspace: str, duration_s: float) -> None:
        """A handler call (a batch, or one job) and how long it took."""
        ms = duration_s * 1000
        self.calls[(workspace, store.bucket_of(ms))] += 1
        self.time_ms[workspace] += round(ms)

    def started(self, envelopes: Sequence[env.Envelope], now_ms: int) -> None:
        """A handler call starts: how late each job due at a set time is."""
        for e in envelopes:
            if e.due_ms:
                self._wait("late", "lateness_ms", now_ms - e.due_ms)

    def begun(self, entry_ids: Sequence[str], at: float) -> None:
        """A handler call of `entry_ids` started at `at` (the loop's clock): its
        start is written at the next flush if it still runs then."""
        self.running[entry_ids[0]] = (entry_ids, at)

    def ended(self, entry_ids: Sequence[str]) -> None:
        """The call's handler returned (or was given up): nothing to write."""
        self.running.pop(entry_ids[0], None)

    def starts(self, now: float) -> dict[str, int]:
        """Entry id -> ms since its handler started, for the calls running now."""
        return {
            eid: round((now - at) * 1000)
            for entry_ids, at in self.running.values()
            for eid in entry_ids
        }

    def completed(self, envelope: env.Envelope, now_ms: int) -> None:
        """A job's handler returned: its latency from publish."""
        self._wait("lat", "latency_ms", now_ms - envelope.created_ms)

    def _wait(self, kind: str, total: str, ms: int) -> None:
        # Clocks of two hosts (publisher's, worker's) may disagree by a little.
        ms = max(0, ms)
        self.waits[f"{kind}|{store.bucket_of(ms, store.WAIT_BUCKETS_MS)}"] += 1
        self.waits[total] += ms

    def settled(self, outcomes: Sequence[Outcome], fenced: set[str]) -> None:
        states = self.states
        for o in outcomes:
            if o.entry_id not in fenced:
                states[(o.workspace, type(o))] += 1

    def take(self) -> store.Batch:
        """Everything since the last take, as the fields `sluice.streams.metrics.flush` adds."""
        now = time.time()
        counts: collections.Counter[str] = collections.Counter()
        processed: collections.Counter[str] = collections.Counter()
        for (workspace, kind), n in self.states.items():
            counters = _counted(kind)
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
        for field, n in self.waits.items():
            counts[f"{store.FUNCTION_SCOPE}|{field}"] += n
        self.states, self.calls, self.time_ms, self.waits = (
            collections.Counter(),
            collections.Counter(),
            collections.Counter(),
            collections.Counter(),
        )
        second = int(now)
        whole = store.FUNCTION_SCOPE
        return store.Batch(
            counts=dict(counts),
            ring=[(scope, second, n) for scope, n in processed.items()],
            last=dict.fromkeys(processed, int(now * 1000)),
            minutes=[(second // 60, processed[whole], counts[f"{whole}|failed"])]
            if whole in processed
            else [],
        )


def _counted(kind: type[Outcome]) -> tuple[str, ...]:
    """What an outcome of `kind` counts as: "processed" first where it counts."""
    match kind:
        case settle.Completed:
            return ("processed", "succeeded")
        case settle.Retried:
            return ("processed", "failed", "retried")
        case settle.Dead:
            return ("processed", "failed", "dead")
        case settle.Deferred:
            return ("rate_limited",)
        case settle.Expired:
            return ("expired",)
        case _:
            assert_never(kind)


async def flush_once(
    client: Redis, keys: PartitionKeys, recorder: Recorder, consumer: str = ""
) -> None:
    """Write what the recorder holds, and what earlier flushes could not write;
    with `consumer`, the starts of its calls running now too."""
    if consumer and recorder.running:
        await _write_starts(client, keys, recorder, consumer)
    batch = recorder.take()
    if batch.counts:
        recorder.unsent.append(batch)
    # Written oldest first; an outage keeps the rest (a bounded number) for later.
    del recorder.unsent[:-UNSENT_LIMIT]
    while recorder.unsent:
        await store.flush(client, keys, recorder.unsent[0])
        recorder.unsent.pop(0)


async def _write_starts(
    client: Redis, keys: PartitionKeys, recorder: Recorder, consumer: str
) -> None:
    """Write the starts of the calls running now, once each (a written start stays
    in Redis until its entry settles). Best effort: a start not written leaves the
    job's status without one. A full Redis refuses the write (it grows memory):
    the calls stay for the next flush, while the metrics, which a full Redis
    takes, go on."""
    calls = [*recorder.running]
    try:
        await starts.write(
            client, keys, consumer, recorder.starts(asyncio.get_running_loop().time())
        )
    except RedisFull:
        log.debug("%s: starts of running jobs not written: Redis is full", keys)
        return
    for call in calls:
        recorder.running.pop(call, None)


async def flush_forever(
    client: Redis, keys: PartitionKeys, recorder: Recorder, health: RedisHealth, consumer: str
) -> NoReturn:
    await Guard(health, f"{keys}: metrics flush").every(
        FLUSH_INTERVAL_S, lambda: flush_once(client, keys, recorder, consumer)
    )
