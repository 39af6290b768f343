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

from runtime.client import Client, Prepared, Receipt
from runtime.lifecycle import finish
from streams.errors import RedisUnavailable

log = logging.getLogger(__name__)

# Writes in flight at once: one collects while another waits for Redis.
WRITERS = 2


class Coalescer:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.waiting: list[tuple[Prepared, asyncio.Future[list[Receipt]]]] = []
        self.ready = asyncio.Event()
        self.writers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.writers = [asyncio.create_task(self._write_forever()) for _ in range(WRITERS)]

    async def stop(self) -> None:
        for task in self.writers:
            await finish(task)
        for _, future in self.waiting:
            if not future.done():
                future.set_exception(RedisUnavailable("the ingress is shutting down"))

    async def publish(self, prepared: Prepared, timeout_s: float) -> list[Receipt]:
        """Write `prepared` with whatever else is waiting; `RedisUnavailable` when not
        confirmed within `timeout_s` (it may still be written: publish again with
        the same ids, which never makes a second job)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Receipt]] = loop.create_future()
        self.waiting.append((prepared, future))
        self.ready.set()
        # A timer that fails the future, not a cancel: the write carries other
        # requests too, and goes on after this one gave up (the writer then
        # finds the future done). Cheaper per request than asyncio.wait.
        timer = loop.call_later(timeout_s, _expire, future, timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    async def _write_forever(self) -> None:
        while True:
            await self.ready.wait()
            batch, self.waiting = self.waiting, []
            self.ready.clear()
            if not batch:
                continue
            try:
                results = await self.client.write([prepared for prepared, _ in batch])
            except Exception as exc:
                if not isinstance(exc, RedisUnavailable):
                    log.exception("publish of %d requests failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), receipts in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(receipts)


def _expire(future: asyncio.Future[list[Receipt]], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(
            RedisUnavailable(f"the write was not confirmed within {timeout_s:g} s")
        )
