"""With Redis paused, a job lookup over HTTP is answered 503 within the documented
bound for any call (`SLUICE_REDIS_CALL_TIMEOUT_S`, by default the socket timeout),
not after each retry has waited its own socket timeout."""

from __future__ import annotations

import asyncio

from sluice.streams.connection import RedisSettings, connect
from tests.ingress.conftest import start_api
from tests.redis_server import RedisServer

MARGIN_S = 0.6


async def test_a_job_lookup_on_a_paused_redis_is_503_within_the_bound(server: RedisServer) -> None:
    # Four attempts of 0.5 s each (and backoff) without an overall deadline: 2 s and more.
    settings = RedisSettings(url=server.url, socket_timeout_s=0.5, connect_timeout_s=0.5, retries=3)
    redis = connect(settings)
    api = await start_api(redis, server.url)
    try:
        kept = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}})
        job_id = (await kept.json())["id"]
        server.pause()
        try:
            async with asyncio.timeout(settings.call_timeout() + MARGIN_S):
                got = await api.http.get(f"/v1/jobs/{job_id}", headers=api.auth("acme"))
        finally:
            server.resume()
        assert got.status == 503
        assert got.headers["Retry-After"]
    finally:
        await api.http.close()
        await redis.aclose()
