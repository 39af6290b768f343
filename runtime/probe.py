"""The health port of workers and schedulers (SLUICE_HEALTH_PORT, off by default),
for Kubernetes' probes: `/healthz` answers while the event loop turns (a blocked
loop answers nothing, and the probe's timeout says so); `/readyz` answers 200
while Redis answers within a second and has not refused this process, else 503.
Both tell Redis's state, how long since the last read, settle and promotion went
through, and the event loop's lag. `sluice check` asks the process beside it, for
an exec probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.error
import urllib.request
from typing import Literal

import msgspec
from aiohttp import web

from runtime.errors import CannotListen
from runtime.health import RedisHealth
from streams.connection import Redis
from streams.errors import RedisRefused, RedisUnavailable, wrap_unavailable

READY_TIMEOUT_S = 1.0
# How often the event loop's lag is measured: a sleep of this long, and how late it woke.
LAG_EVERY_S = 0.5


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
    client: Redis, health: RedisHealth, host: str, port: int, stop: asyncio.Event
) -> None:
    """Answer the probes on `host:port` until `stop` is set."""
    probe = HealthPort(client, health)
    app = web.Application()
    app.router.add_get("/healthz", probe.healthz)
    app.router.add_get("/readyz", probe.readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise CannotListen(
            f"cannot listen on {host}:{port} (SLUICE_HEALTH_PORT): {reason}"
        ) from None
    lag = asyncio.create_task(probe.measure_lag())
    try:
        await stop.wait()
    finally:
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
        await runner.cleanup()


def check(port: int, path: str = "/readyz", timeout_s: float = 2.0) -> tuple[bool, str]:
    """Ask the health port on this host; (ready, what it said)."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return True, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode()
    except OSError as exc:
        return False, f"no answer from {url}: {exc}"
