"""Handler timeouts: one watchdog per partition loop cancels lanes whose call overran.

One watchdog instead of an `asyncio.timeout` per call: those cost a third of the
worker's time per job with a no-op handler (bench profile). A call may overrun by
up to a tenth of the timeout, the watchdog's period.

A call still running a period after its cancel is cancelled again, every period:
on Python 3.11, `asyncio.wait_for` (which redis-py uses for every send, so any
handler talking to Redis) can swallow a cancel, and the call would run on.
"""

from __future__ import annotations

import asyncio


class Lane:
    """One of a partition's `concurrency` handler tasks, as the watchdog sees it."""

    __slots__ = ("call", "cancelled_at", "expired", "started", "task")

    def __init__(self) -> None:
        # The call running now (None between calls) and when it started.
        self.call: object | None = None
        self.started = 0.0
        # The call the watchdog cancelled, so the lane can tell a timeout from
        # shutdown, and when it last sent that call a cancel.
        self.expired: object | None = None
        self.cancelled_at = 0.0
        self.task: asyncio.Task[None]


async def expire_forever(lanes: list[Lane], timeout_s: float) -> None:
    """Cancel every lane whose current call started `timeout_s` ago or more."""
    clock = asyncio.get_running_loop().time
    period = max(0.01, timeout_s / 10)
    while True:
        await asyncio.sleep(period)
        now = clock()
        for lane in lanes:
            call = lane.call
            if call is None or now - lane.started < timeout_s:
                continue
            if lane.expired is not call:
                lane.expired, lane.cancelled_at = call, now
                lane.task.cancel()
            elif now - lane.cancelled_at >= period:
                lane.cancelled_at = now  # the last cancel was lost: send another
                lane.task.cancel()
