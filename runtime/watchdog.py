"""Handler timeouts: one watchdog per partition loop cancels lanes whose call overran.

One watchdog instead of an `asyncio.timeout` per call: those cost a third of the
worker's time per job with a no-op handler (bench profile). A call may overrun by
up to a tenth of the timeout, the watchdog's period.
"""

from __future__ import annotations

import asyncio


class Lane:
    """One of a partition's `concurrency` handler tasks, as the watchdog sees it."""

    __slots__ = ("call", "expired", "started", "task")

    def __init__(self) -> None:
        # The call running now (None between calls) and when it started.
        self.call: object | None = None
        self.started = 0.0
        # The call the watchdog cancelled, so the lane can tell a timeout from shutdown.
        self.expired: object | None = None
        self.task: asyncio.Task[None]


async def expire_forever(lanes: list[Lane], timeout_s: float) -> None:
    """Cancel every lane whose current call started `timeout_s` ago or more."""
    clock = asyncio.get_running_loop().time
    while True:
        await asyncio.sleep(max(0.01, timeout_s / 10))
        now = clock()
        for lane in lanes:
            call = lane.call
            if call is not None and lane.expired is not call and now - lane.started >= timeout_s:
                lane.expired = call
                lane.task.cancel()
