"""The settler of a partition loop: the outcomes of the lanes and of intake, written
in one `settle.lua` call per round, fenced to what this worker still holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sluice.runtime.guard import Guard
from sluice.runtime.telemetry import instruments
from sluice.runtime.worker.partition import Partition
from sluice.runtime.worker.recorder import Recorder
from sluice.streams.errors import GroupMissing, RedisUnavailable
from sluice.streams.settle import Outcome, Settled, settle
from sluice.streams.suspects import forget

log = logging.getLogger(__name__)

# Loop turns the settler waits at most for more outcomes before it writes.
GATHER_TURNS = 8


class Settler:
    """Settles every outcome added since its last round, until closed and empty."""

    def __init__(self, part: Partition, recorder: Recorder) -> None:
        self.part = part
        self.recorder = recorder
        opts = part.fn.options
        self.retention_ms = int(opts.retention_s * 1000)
        self.dead_retention_ms = int(opts.dead_retention_s * 1000)
        # Appended to by the lanes (per job, so as a plain list) and intake.
        self.outbox: list[Outcome] = []
        self.ready = asyncio.Event()
        self.closing = False

    def add(self, outcomes: list[Outcome]) -> None:
        self.outbox += outcomes
        self.ready.set()

    def close(self) -> None:
        """Settle what is in, then end: no lane runs any more."""
        self.closing = True
        self.ready.set()

    async def run(self, idle: Callable[[], bool]) -> None:
        """Settle round after round; `idle` says no call is queued or running, so no
        outcome is coming (runtime.worker.lanes)."""
        part = self.part
        opts = part.fn.options
        guard = Guard(part.health, f"{part.keys}: settle")
        while True:
            await self.ready.wait()
            await self._gather(idle)
            self.ready.clear()
            if not self.outbox:
                if self.closing:
                    return
                continue
            batch, self.outbox = self.outbox, []
            try:
                result = await settle(
                    part.client,
                    part.keys,
                    part.consumer,
                    self.retention_ms,
                    batch,
                    len(part.held),
                    opts.retention_count,
                    dead_retention_ms=self.dead_retention_ms,
                    dead_retention_count=opts.dead_retention_count,
                )
            except GroupMissing:
                # Redis lost their entries: retried, this settle would fail forever.
                await part.lost([o.entry_id for o in batch])
                continue
            except Exception as exc:
                # Keep every outcome: nothing finished is forgotten while Redis is away.
                self.outbox[:0] = batch
                self.ready.set()
                await guard.pause(exc)
                continue
            guard.ok()
            part.health.did("settle")
            await self._settled(batch, result)

    async def _gather(self, idle: Callable[[], bool]) -> None:
        """Under load, let a batch of outcomes build up; when idle, settle at once.

        Each turn lets every ready lane finish its call. With nothing queued or
        running, no outcome is coming, so a lone job pays no extra latency.
        """
        batch_size = self.part.fn.options.batch_size
        for _ in range(GATHER_TURNS):
            if len(self.outbox) >= batch_size or idle():
                return
            await asyncio.sleep(0)

    async def _settled(self, batch: list[Outcome], result: Settled) -> None:
        """Let go of what settled: its held entries (room for the reader), the marks
        of suspects among it, and its count in the metrics."""
        part = self.part
        held = part.held
        for o in batch:
            held.pop(o.entry_id, None)
        fenced = set(result.fenced)
        if part.suspects:
            await self._forget_suspects(batch, fenced)
        self.recorder.settled(batch, fenced)
        if instruments.enabled():
            instruments.settled(part.fn.name, batch, fenced)
        if result.fenced:
            log.warning(
                "%s: %d results not settled: another worker reclaimed those jobs",
                part.keys,
                len(result.fenced),
            )
        part.room.set()

    async def _forget_suspects(self, batch: list[Outcome], fenced: set[str]) -> None:
        """Drop the marks of suspects settled here (those fenced are another's now)."""
        part = self.part
        gone = [o.entry_id for o in batch if o.entry_id in part.suspects]
        if not gone:
            return
        part.suspects.difference_update(gone)
        # Left behind when Redis is away: the marks expire with their key.
        with contextlib.suppress(RedisUnavailable):
            await forget(part.client, part.keys, [eid for eid in gone if eid not in fenced])
