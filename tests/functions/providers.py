"""Real HTTP servers on loopback shaped like the delivery providers, and a worker
running one function with the settings a test gives: for tests/functions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
from aiohttp import web

from runtime import Function
from tests.runtime.helpers import hosting


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
        self.url = ""
        self._release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
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
