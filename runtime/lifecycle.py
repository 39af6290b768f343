"""Signals set one stop event; every host waits on it and shuts down in order."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

log = logging.getLogger(__name__)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM or SIGINT sets `stop`; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting without waiting", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, returning early once `stop` is set."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass


async def stop_task(task: asyncio.Task[Any], timeout_s: float = 0.0) -> None:
    """Let `task` end by itself within `timeout_s`, then cancel it until it has ended.

    Cancelled again and again, not once: on Python 3.11, `asyncio.wait_for`, which
    redis-py uses for every command it sends, swallows a cancellation that lands
    just as the send completes, and a task that lost its only cancel runs on and
    hangs the shutdown (seen in the tests). Exceptions the task ended with are
    dropped: a task being stopped has nothing more to report.
    """
    done, _ = await asyncio.wait([task], timeout=timeout_s)
    while not done:
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
    await asyncio.gather(task, return_exceptions=True)
