"""The health port of workers and schedulers (SLUICE_HEALTH_PORT, off by default),
for Kubernetes' probes: `/healthz` answers while the event loop turns (a blocked
loop answers nothing, and the probe's timeout says so); `/readyz` answers 200
while Redis answers within a second and has not refused this process, else 503.
Both tell Redis's state, how long since the last read, settle and promotion went
through, and the event loop's lag. `sluice check` asks the process beside it, for
an exec probe.

Under `sluice worker --processes N` the supervisor serves the port, so that one
probe per pod sees every process: each worker process answers on its own unix
socket, and the supervisor asks them all (`processes_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import aiohttp
import msgspec
from aiohttp import web

from sluice.runtime.errors import CannotListen
from sluice.runtime.health import RedisHealth
from sluice.streams.connection import Redis
from sluice.streams.errors import RedisRefused, RedisUnavailable, wrap_unavailable

# The probe's two routes, as Kubernetes manifests name them (tests/test_infra.py).
LIVE_PATH = "/healthz"
READY_PATH = "/readyz"
READY_TIMEOUT_S = 1.0
# How often the event loop's lag is measured: a sleep of this long, and how late it woke.
LAG_EVERY_S = 0.5
# How long a supervisor waits for a worker process's answer: its /readyz itself
# waits up to READY_TIMEOUT_S for Redis.
ASK_TIMEOUT_S = READY_TIMEOUT_S + 0.5

# Where a probe listens: a TCP (host, port), or a unix socket's path (a worker
# process's, which only its supervisor asks).
Address = tuple[str, int] | Path


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    """What /healthz and /readyz answer."""

    status: Literal["ok", "unavailable"]
    detail: str = ""
    # up: answered the probe's ping; down: did not; refused: refused this process.
    redis: Literal["up", "down", "refused"]
    # How long this process's calls have been failing (0 while they go through).
    down_for_s: float
    # Seconds since each activity ("read", "settle", "promote") last went through.
    last_s: dict[str, float]
    loop_lag_ms: float


class HealthPort:
    """The probe's two routes over one process's `RedisHealth`."""

    def __init__(self, client: Redis, health: RedisHealth) -> None:
        self.client = client
        self.health = health
        self.lag_s = 0.0

    async def healthz(self, request: web.Request) -> web.Response:
        return self._answer(self._probe("ok", "", "down" if not self.health.available else "up"))

    async def readyz(self, request: web.Request) -> web.Response:
        health = self.health
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                with wrap_unavailable():
                    await self.client.ping()
        except TimeoutError:
            return self._answer(self._probe("unavailable", "redis did not answer within 1 s"))
        except RedisRefused as exc:
            return self._answer(self._probe("unavailable", str(exc), "refused"))
        except RedisUnavailable as exc:
            return self._answer(self._probe("unavailable", f"redis: {exc}"))
        if health.refused:
            # The ping passed, but the process's own calls are refused (an ACL).
            return self._answer(self._probe("unavailable", health.error, "refused"))
        return self._answer(self._probe("ok", "", "up"))

    def _probe(
        self,
        status: Literal["ok", "unavailable"],
        detail: str,
        redis: Literal["up", "down", "refused"] = "down",
    ) -> Probe:
        now = time.time()
        return Probe(
            status=status,
            detail=detail,
            redis=redis,
            down_for_s=round(self.health.down_for_s(), 3),
            last_s={what: round(now - at, 3) for what, at in sorted(self.health.last.items())},
            loop_lag_ms=round(self.lag_s * 1000, 1),
        )

    @staticmethod
    def _answer(probe: Probe) -> web.Response:
        return web.Response(
            body=msgspec.json.encode(probe),
            status=200 if probe.status == "ok" else 503,
            content_type="application/json",
        )

    async def measure_lag(self) -> None:
        """How late a short sleep wakes: the time callbacks wait for the loop."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_EVERY_S)
            self.lag_s = max(0.0, loop.time() - start - LAG_EVERY_S)


async def serve_probe(
    client: Redis, health: RedisHealth, address: Address, stop: asyncio.Event
) -> None:
    """Answer the probes on `address` until `stop` is set."""
    probe = HealthPort(client, health)
    app = web.Application()
    app.router.add_get(LIVE_PATH, probe.healthz)
    app.router.add_get(READY_PATH, probe.readyz)
    runner = await open_port(app, address)
    lag = asyncio.create_task(probe.measure_lag())
    try:
        await stop.wait()
    finally:
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
        await runner.cleanup()


async def open_port(app: web.Application, address: Address) -> web.AppRunner:
    """`app` answering on `address`; CannotListen (one line) when it cannot bind."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = (
        web.UnixSite(runner, str(address))
        if isinstance(address, Path)
        else web.TCPSite(runner, *address)
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        where = address if isinstance(address, Path) else "{}:{}".format(*address)
        raise CannotListen(f"cannot listen on {where} (SLUICE_HEALTH_PORT): {reason}") from None
    return runner


class ProcessProbe(msgspec.Struct, frozen=True, kw_only=True):
    """One worker process as its supervisor's health port tells it."""

    slot: int
    # None: between a crash and its restart.
    pid: int | None
    # starting: not listening yet (or being restarted), which is alive but not ready.
    status: Literal["ok", "starting", "unavailable"]
    detail: str = ""
    # What the process answered, when it did.
    probe: Probe | None = None


class ProcessesProbe(msgspec.Struct, frozen=True, kw_only=True):
    """What a supervisor's /healthz and /readyz answer."""

    status: Literal["ok", "unavailable"]
    detail: str = ""
    processes: list[ProcessProbe]


class ProcessesPort:
    """A supervisor's probe routes: ready while every worker process answers ready,
    alive while every one that listens answers /healthz in time. A process that is
    starting, or waits to be restarted, is alive: the supervisor watches it, and a
    pod restarted for it would start it again all the same."""

    def __init__(self, sockets: Sequence[Path], pid: Callable[[int], int | None]) -> None:
        self.sockets = sockets
        self.pid = pid

    async def healthz(self, request: web.Request) -> web.Response:
        return await self._gather(LIVE_PATH, ("ok", "starting"))

    async def readyz(self, request: web.Request) -> web.Response:
        return await self._gather(READY_PATH, ("ok",))

    async def _gather(self, path: str, passing: tuple[str, ...]) -> web.Response:
        asked = [self._ask(slot, socket, path) for slot, socket in enumerate(self.sockets)]
        processes = list(await asyncio.gather(*asked))
        failing = [p for p in processes if p.status not in passing]
        answer = ProcessesProbe(status="ok", processes=processes)
        if failing:
            first = failing[0]
            pid = "" if first.pid is None else f" (pid {first.pid})"
            detail = f"worker process {first.slot}{pid}: {first.detail}"
            answer = ProcessesProbe(status="unavailable", detail=detail, processes=processes)
        return web.Response(
            body=msgspec.json.encode(answer),
            status=200 if answer.status == "ok" else 503,
            content_type="application/json",
        )

    async def _ask(self, slot: int, socket: Path, path: str) -> ProcessProbe:
        pid = self.pid(slot)
        if pid is None:
            return ProcessProbe(slot=slot, pid=None, status="starting", detail="being restarted")
        connector = aiohttp.UnixConnector(path=str(socket))
        try:
            async with (
                asyncio.timeout(ASK_TIMEOUT_S),
                aiohttp.ClientSession(connector=connector) as http,
                http.get(f"http://worker{path}") as answer,
            ):
                probe = msgspec.json.decode(await answer.read(), type=Probe)
        except TimeoutError:
            detail = f"no answer within {ASK_TIMEOUT_S} s (a blocked or stopped process)"
            return ProcessProbe(slot=slot, pid=pid, status="unavailable", detail=detail)
        except aiohttp.ClientConnectionError:
            # Nothing listens on its socket yet: it is still starting.
            return ProcessProbe(slot=slot, pid=pid, status="starting", detail="starting")
        except msgspec.DecodeError as exc:
            detail = f"an answer that is not a probe's: {exc}"
            return ProcessProbe(slot=slot, pid=pid, status="unavailable", detail=detail)
        status, detail = probe.status, probe.detail
        return ProcessProbe(slot=slot, pid=pid, status=status, detail=detail, probe=probe)


def processes_app(sockets: Sequence[Path], pid: Callable[[int], int | None]) -> web.Application:
    """The probe routes of a supervisor whose process `slot` (running as `pid(slot)`,
    None while it is being restarted) answers on `sockets[slot]`."""
    port = ProcessesPort(sockets, pid)
    app = web.Application()
    app.router.add_get(LIVE_PATH, port.healthz)
    app.router.add_get(READY_PATH, port.readyz)
    return app


def check(port: int, path: str = READY_PATH, timeout_s: float = 2.0) -> tuple[bool, str]:
    """Ask the health port on this host; (ready, what it said)."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return True, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode()
    except OSError as exc:
        return False, f"no answer from {url}: {exc}"
