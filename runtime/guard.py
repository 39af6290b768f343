"""How every background task meets a failed call, written once.

An outage (`RedisUnavailable`) is told to the process's `RedisHealth`, which logs
it once per change (and once a period while it lasts) rather than once per task
and retry, and gives up on a task refused (`RedisRefused`) too often in a row;
any other error is a bug or a refusal Redis may get over (out of memory),
logged with its traceback.
Either way the task goes on: a worker keeps its claims and its outcomes through
an outage and carries on when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

from sluice.runtime.backoff import Backoff
from sluice.runtime.health import RedisHealth
from sluice.runtime.lifecycle import sleep_unless
from sluice.streams.errors import RedisRefused, RedisUnavailable

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]


class Guard:
    """One task's error handling and backoff; `what` names it in the log
    ("sluice:{fn#0}: heartbeat" logs "sluice:{fn#0}: heartbeat failed")."""

    __slots__ = ("backoff", "health", "refusals", "what")

    def __init__(self, health: RedisHealth, what: str) -> None:
        self.health = health
        self.what = what
        self.backoff = Backoff()
        # Refusals in a row (RedisRefused): the health gives up past a bound.
        self.refusals = 0

    def ok(self) -> None:
        """A call went through: Redis is there, and the next failure backs off from the start."""
        self.health.up()
        self.backoff.reset()
        self.refusals = 0

    def report(self, exc: Exception) -> None:
        self.refusals = self.refusals + 1 if isinstance(exc, RedisRefused) else 0
        if isinstance(exc, RedisUnavailable):
            self.health.down(exc, self.refusals)
        else:
            log.error("%s failed", self.what, exc_info=exc)

    async def pause(self, exc: Exception) -> None:
        """Report `exc`, then wait out the backoff before the task tries again."""
        self.report(exc)
        await asyncio.sleep(self.backoff.next_delay())

    async def every(self, period_s: float, step: Step) -> NoReturn:
        """Run `step` every `period_s`, the first a period from now, until cancelled.
        A step that fails is reported; the next comes a period later all the same."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await step()
            except Exception as exc:
                self.report(exc)
            else:
                self.ok()

    async def until_done(self, step: Step, stop: asyncio.Event | None = None) -> bool:
        """Run `step` until it goes through (True), backing off between tries, or
        until `stop` is set (False)."""
        while stop is None or not stop.is_set():
            try:
                await step()
            except Exception as exc:
                self.report(exc)
                delay = self.backoff.next_delay()
                await (asyncio.sleep(delay) if stop is None else sleep_unless(stop, delay))
                continue
            self.ok()
            return True
        return False
