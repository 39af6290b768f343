"""Publishes of concurrent requests written together.

Each request's events are validated on their own (one bad request fails alone);
what is waiting is then written in one go, a script call per partition for all
requests. One write is in flight at a time, and what arrives meanwhile goes in
the next: under load a write carries many requests, so requests per second are
not bound by one Redis round trip each; idle, a request waits for nothing but
its own write. (Two writers in flight at once split the same requests into
more, smaller calls, and redis-py's work per call cost more CPU a request.)

A request of CHUNK events or more is written by a task of its own: it fills
script calls by itself, and the one writer's small requests do not wait behind
an import of many thousand events (Redis runs the calls in turn, so they wait
for one call of it at most).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import NamedTuple

from sluice.runtime.client.publish import CHUNK, Client, Prepared, Receipt
from sluice.runtime.lifecycle import stop_task
from sluice.streams.errors import RedisUnavailable

log = logging.getLogger(__name__)


class Waiting(NamedTuple):
    """One request's publish, waiting for the writer."""

    prepared: Prepared
    future: asyncio.Future[list[Receipt]]
    # The loop's time after which no write can confirm it any more.
    deadline: float


class Coalescer:
    """Writes what requests publish, many requests a script call.

    Every publish must be confirmed within `timeout_s`, or fail: a request never
    hangs on a Redis that does not answer. One timer watches them all, armed for
    the oldest unconfirmed publish, not one a request: making and cancelling an
    event-loop timer per request was a cost worth saving (bench/README.md). All
    publishes wait equally long, so the oldest is always the first to expire.
    """

    def __init__(self, client: Client, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.waiting: list[Waiting] = []
        self.ready = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        # Writes of large requests, each on its own.
        self.alone: set[asyncio.Task[None]] = set()
        # Publishes not yet answered, oldest first (answered ones leave lazily).
        self.unconfirmed: deque[Waiting] = deque()
        self.watch: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.writer = asyncio.create_task(self._write_forever())

    async def stop(self) -> None:
        tasks = [*self.alone] if self.writer is None else [self.writer, *self.alone]
        for task in tasks:
            await stop_task(task)
        if self.watch is not None:
            self.watch.cancel()
        for waiting in self.unconfirmed:
            _fail(waiting.future, RedisUnavailable("the ingress is shutting down"))

    def publish(self, prepared: Prepared) -> asyncio.Future[list[Receipt]]:
        """Write `prepared` with whatever else is waiting: a future of its receipts,
        failed with `RedisUnavailable` when not confirmed within `timeout_s` (it may
        still be written: publish again with the same ids, which never makes a
        second job). A future to await, not a coroutine: one frame fewer for every
        request to resume through."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Receipt]] = loop.create_future()
        waiting = Waiting(prepared, future, loop.time() + self.timeout_s)
        self.unconfirmed.append(waiting)
        if self.watch is None:
            self.watch = loop.call_at(waiting.deadline, self._expire)
        if len(prepared.ids) >= CHUNK:
            task = asyncio.create_task(self._write([waiting]))
            self.alone.add(task)
            task.add_done_callback(self.alone.discard)
        else:
            self.waiting.append(waiting)
            self.ready.set()
        return future

    def _expire(self) -> None:
        """Fail the publishes past their deadline (the write carries others too and
        goes on: its writer then finds these futures done), and watch the next."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        unconfirmed = self.unconfirmed
        while unconfirmed and (unconfirmed[0].future.done() or unconfirmed[0].deadline <= now):
            future = unconfirmed.popleft().future
            if not future.done():
                future.set_exception(
                    RedisUnavailable(f"the write was not confirmed within {self.timeout_s:g} s")
                )
        self.watch = loop.call_at(unconfirmed[0].deadline, self._expire) if unconfirmed else None

    async def _write_forever(self) -> None:
        while True:
            await self.ready.wait()
            batch, self.waiting = self.waiting, []
            self.ready.clear()
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[Waiting]) -> None:
        """Write `batch` in one go and answer each of its publishes."""
        try:
            results = await self.client.write([w.prepared for w in batch])
        except Exception as exc:
            if not isinstance(exc, RedisUnavailable):
                log.exception("publish of %d requests failed", len(batch))
            for waiting in batch:
                _fail(waiting.future, exc)
        else:
            for waiting, receipts in zip(batch, results, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(receipts)
        # The answered ones at the front leave now, not when the watch fires.
        unconfirmed = self.unconfirmed
        while unconfirmed and unconfirmed[0].future.done():
            unconfirmed.popleft()


def _fail(future: asyncio.Future[list[Receipt]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
