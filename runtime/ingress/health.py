"""Liveness and readiness: `/healthz` answers while the process runs; `/readyz`
only while Redis (every primary of a cluster) answers within a second (a load
balancer stops sending publishes that could only get 503), naming a refused
password or ACL as such."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sluice.runtime.ingress.bodies import Health
from sluice.runtime.ingress.routes import Public, Route, Services, reply
from sluice.streams.errors import RedisRefused
from sluice.streams.server import ping_primaries

READY_TIMEOUT_S = 1.0


async def healthz(request: web.Request, services: Services) -> web.Response:
    return reply(Health("ok"))


async def readyz(request: web.Request, services: Services) -> web.Response:
    # asyncio.wait, not wait_for: the ping is not waited on past the timeout.
    ping = asyncio.ensure_future(ping_primaries(services.redis))
    done, _ = await asyncio.wait([ping], timeout=READY_TIMEOUT_S)
    if not done:
        ping.cancel()
        return reply(Health("unavailable", "redis did not answer within 1 s"), 503)
    if isinstance(error := ping.exception(), RedisRefused):
        return reply(Health("unavailable", str(error)), 503)
    if error is not None:
        return reply(Health("unavailable", f"redis: {error}"), 503)
    return reply(Health("ok"))


ROUTES = [
    Route("GET", "/healthz", Public(healthz), "The process is alive", "health",
          replies={200: Health}),
    Route("GET", "/readyz", Public(readyz), "Redis answers: ready for traffic", "health",
          replies={200: Health, 503: Health}),
]  # fmt: skip
