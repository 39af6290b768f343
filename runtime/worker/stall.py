"""Noticing, from a thread of its own, an event loop that a handler blocks.

An `async def` handler that calls blocking code (`time.sleep`, a sync HTTP or
SMTP client) stops the whole worker: no heartbeat goes out, so its jobs look
like a dead worker's, and another worker takes them over and runs them again
while this one still runs them. The watch thread sees the loop stalled, says
which handler holds it and which jobs are in flight, and extends the claims of
every held job itself until the loop runs again. (Plain `def` handlers run in
threads and never block the loop: runtime.declare.)
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence

from sluice.streams.claims import extend
from sluice.streams.connection import RedisSettings, connect
from sluice.streams.keys import PartitionKeys

log = logging.getLogger(__name__)

# The loop ticks this often; a tick this late is a stall worth a warning.
TICK_S = 0.1
WARN_AFTER_S = 1.0

# What the watch extends: a partition's keys, the consumer, the held entry ids.
Claims = tuple[PartitionKeys, str, Sequence[str]]


class StallWatch:
    """Watches one event loop from a daemon thread; `start` on the loop, `stop` after."""

    def __init__(
        self,
        redis: RedisSettings,
        claims: Callable[[], list[Claims]],
        running: Callable[[], list[str]],
        extend_every_s: float,
    ) -> None:
        self.redis = redis
        self.claims = claims
        self.running = running
        self.extend_every_s = extend_every_s
        self._tick = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sluice-stall-watch", daemon=True)
        self._loop_thread = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_thread = threading.get_ident()
        self._beat(loop)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
        self._thread.join()

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick = time.monotonic()
        self._handle = loop.call_later(TICK_S, self._beat, loop)

    def _watch(self) -> None:
        stalled_at = 0.0
        # When the claims were last extended: by the loop's heartbeat before the
        # stall (at the latest, its last tick), then by this thread.
        extended = 0.0
        while not self._stopped.wait(TICK_S):
            now = time.monotonic()
            lag = now - self._tick
            if lag < 2 * TICK_S:
                if stalled_at:
                    log.warning("event loop ran again after %.1f s blocked", now - stalled_at)
                    stalled_at = 0.0
                extended = self._tick
                continue
            # Every third of the visibility timeout, as the loop's own heartbeat.
            if now - extended >= self.extend_every_s:
                extended = now
                self._extend()
            if not stalled_at and lag >= WARN_AFTER_S:
                stalled_at = self._tick
                log.warning(
                    "event loop blocked for %.1f s by %s; in flight: %s. A handler that "
                    "blocks belongs in a plain def (run in a thread)",
                    lag,
                    self._culprit(),
                    "; ".join(self.running()) or "nothing",
                )

    def _culprit(self) -> str:
        """The innermost Python frame the loop's thread is in: the blocking call's caller."""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "an unknown call"
        last = traceback.extract_stack(frame, limit=1)[-1]
        return f"{last.name} ({last.filename}:{last.lineno})"

    def _extend(self) -> None:
        """Keep the held jobs claimed while the loop cannot: over a client of this
        thread's own, as the loop's client belongs to the blocked loop."""

        async def extend_all() -> int:
            client = connect(self.redis)
            try:
                lost = 0
                for keys, consumer, entry_ids in self.claims():
                    lost += len((await extend(client, keys, consumer, entry_ids)).lost)
                return lost
            finally:
                await client.aclose()

        try:
            lost = asyncio.run(extend_all())
        except Exception as exc:
            log.warning("claims not extended while the loop is blocked: %s", exc)
            return
        if lost:
            log.warning("%d held jobs were taken over while the loop was blocked", lost)
