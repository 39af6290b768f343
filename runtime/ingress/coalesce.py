"""Publishes of concurrent requests written together.

Each request's events are validated on their own (one bad request fails alone);
what is waiting is then written in one go, a script call per partition for all
requests, while the previous write is in flight. Under load a write carries many
requests, so requests per second are not bound by one Redis round trip each;
idle, a request waits for nothing but its own write.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from runtime.client import Client, Prepared, Receipt
from runtime.lifecycle import finish
from streams.errors import RedisUnavailable

log = logging.getLogger(__name__)

# Writes in flight at once: one collects while another waits for Redis.
WRITERS = 2


class Waiting(NamedTuple):
    """One request's publish, waiting for a writer."""

    prepared: Prepared
    future: asyncio.Future[list[Receipt]]
    # Fails the future if no write confirmed it in time.
    timer: asyncio.TimerHandle

    def fail(self, exc: BaseException) -> None:
        self.timer.cancel()
        if not self.future.done():
            self.future.set_exception(exc)


class Coalescer:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.waiting: list[Waiting] = []
        self.ready = asyncio.Event()
        self.writers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.writers = [asyncio.create_task(self._write_forever()) for _ in range(WRITERS)]

    async def stop(self) -> None:
        for task in self.writers:
            await finish(task)
        for waiting in self.waiting:
            waiting.fail(RedisUnavailable("the ingress is shutting down"))

    def publish(self, prepared: Prepared, timeout_s: float) -> asyncio.Future[list[Receipt]]:
        """Write `prepared` with whatever else is waiting: a future of its receipts,
        failed with `RedisUnavailable` when not confirmed within `timeout_s` (it may
        still be written: publish again with the same ids, which never makes a
        second job). A future to await, not a coroutine: one frame fewer for every
        request to resume through."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Receipt]] = loop.create_future()
        # A timer that fails the future, not a cancel: the write carries other
        # requests too, and goes on after this one gave up (the writer then
        # finds the future done). Cheaper per request than asyncio.wait.
        timer = loop.call_later(timeout_s, _expire, future, timeout_s)
        self.waiting.append(Waiting(prepared, future, timer))
        self.ready.set()
        return future

    async def _write_forever(self) -> None:
        while True:
            await self.ready.wait()
            batch, self.waiting = self.waiting, []
            self.ready.clear()
            if not batch:
                continue
            try:
                results = await self.client.write([w.prepared for w in batch])
            except Exception as exc:
                if not isinstance(exc, RedisUnavailable):
                    log.exception("publish of %d requests failed", len(batch))
                for waiting in batch:
                    waiting.fail(exc)
                continue
            for waiting, receipts in zip(batch, results, strict=True):
                waiting.timer.cancel()
                if not waiting.future.done():
                    waiting.future.set_result(receipts)


def _expire(future: asyncio.Future[list[Receipt]], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(
            RedisUnavailable(f"the write was not confirmed within {timeout_s:g} s")
        )
