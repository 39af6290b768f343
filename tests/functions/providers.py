"""Real HTTP servers on loopback shaped like the delivery providers, a worker
running one function with the settings a test gives, and what a test of a
channel's rate measures: for tests/functions."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from sluice.runtime import Function
from tests.runtime.helpers import LoopLag, hosting


class Answer(msgspec.Struct, frozen=True):
    """What the server answers one request: a status, headers and a JSON body, or
    no answer at all (`hang`) until the test ends."""

    status: int = 201
    body: Any = None
    headers: dict[str, str] = {}
    hang: bool = False


class Arrival(msgspec.Struct, frozen=True):
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, list[str]]
    at_s: float


class ProviderServer:
    """Answers every POST to a path of `by_path` with its answer, any other with
    the next of `answers`, then with `success`; keeps what arrived."""

    def __init__(self) -> None:
        self.by_path: dict[str, Answer] = {}
        self.answers: list[Answer] = []
        self.success = Answer(201, {"sid": "SM0001", "status": "queued"})
        self.arrivals: list[Arrival] = []
        # Called with each request as it arrives, before it is answered.
        self.on_arrival: Callable[[web.Request], None] = lambda _: None
        self.url = ""
        self._release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.on_arrival(request)
        body = await request.read()
        form: dict[str, list[str]] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            for name, value in (await request.post()).items():
                form.setdefault(name, []).append(str(value))
        self.arrivals.append(
            Arrival(request.path, dict(request.headers), body, form, time.monotonic())
        )
        answer = self.by_path.get(request.path) or (
            self.answers.pop(0) if self.answers else self.success
        )
        if answer.hang:
            await self._release.wait()
        return web.Response(
            status=answer.status,
            body=msgspec.json.encode(answer.body),
            headers=answer.headers,
            content_type="application/json",
        )

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[ProviderServer]:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            self._release.set()
            await runner.cleanup()


@contextlib.asynccontextmanager
async def worker_for(
    url: str, fn: Function[Any], environ: Mapping[str, str]
) -> AsyncIterator[None]:
    """`fn` on a worker (and a scheduler, for its retries) on this event loop, with
    the settings `environ` gives; stopped on exit."""
    async with hosting(url, [fn], environ, scheduler=True, recheck_s=0.2):
        yield


def busiest_second(times: Iterable[float]) -> int:
    """The most of `times` (seconds) that fall within any one second."""
    ordered = sorted(times)
    most = end = 0
    for i, start in enumerate(ordered):
        while end < len(ordered) and ordered[end] < start + 1.0:
            end += 1
        most = max(most, end - i)
    return most


def assert_rate_held(times: Iterable[float], fn: Function[Any], lag: LoopLag) -> None:
    """No second of `times` (`fn`'s jobs started, as their provider saw them arrive)
    holds more than its global limit allows: a second's rate plus the burst
    (`rate_burst_s` of rate), plus the jobs whose slots passed while the loop stood
    still, as many as the rate gives the longest stall (README: Rate limits)."""
    rate, burst_s = fn.options.rate_per_s, fn.options.rate_burst_s
    bound = math.ceil(rate + rate * burst_s + rate * lag.max_s)
    busiest = busiest_second(times)
    assert busiest <= bound, f"{busiest} in one second, over {bound} (loop lag {lag.max_s:.3f} s)"
