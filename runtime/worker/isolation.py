"""Running a suspect job alone in its process, so the next crash names the culprit.

A job that was running when a worker died may be what killed it, or may have
run beside what did. Run alone, it is the only job a crash can be charged to:
innocent neighbours are not dead-lettered with a poison job, and the poison job
is cut after `max_deliveries` crashes all the same. One gate per process, as a
crash takes every function's calls in it.
"""

from __future__ import annotations

import asyncio


class Gate:
    """Handler calls pass shared; a suspect's call waits for the others to end and
    holds new ones back while it runs."""

    __slots__ = ("_alone", "_idle", "_open", "running")

    def __init__(self) -> None:
        self.running = 0
        # One suspect at a time.
        self._alone = asyncio.Lock()
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()

    def closed(self) -> bool:
        return not self._open.is_set()

    async def enter(self, alone: bool) -> None:
        """Wait for a turn: `alone`, until nothing else runs; shared, until no
        suspect runs. Callers pass shared calls with `running += 1` while the gate
        is open, which costs no coroutine on the hot path."""
        if not alone:
            while not self._open.is_set():
                await self._open.wait()
            self.running += 1
            return
        await self._alone.acquire()
        self._open.clear()
        try:
            while self.running:
                self._idle.clear()
                await self._idle.wait()
        except BaseException:
            self._open.set()
            self._alone.release()
            raise
        self.running += 1

    def leave(self, alone: bool) -> None:
        self.running -= 1
        if alone:
            self._open.set()
            self._alone.release()
        elif not self.running:
            self._idle.set()
