"""A full Redis (maxmemory reached, noeviction) under the ingress: publishes are
answered 503 with Retry-After, saying so, reads go on; once memory returns, 202."""

from __future__ import annotations

from sluice.streams.connection import connect
from tests.conftest import settings_for
from tests.ingress.conftest import start_api
from tests.redis_server import RedisServer


async def test_a_publish_to_a_full_redis_is_503_with_retry_after(server: RedisServer) -> None:
    redis = connect(settings_for(server.url))
    api = await start_api(redis, server.url)
    try:
        kept = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 0}})
        assert kept.status == 202
        job_id = (await kept.json())["id"]
        # 1 byte: over `maxmemory` whatever Redis holds.
        await redis.config_set("maxmemory", 1)
        for body in (
            {"workspace": "acme", "data": {"n": 1}},
            [{"workspace": "acme", "data": {"n": 2}}] * 3,
        ):
            answer = await api.post("/v1/events/tasks", body)
            assert answer.status == 503
            assert int(answer.headers["Retry-After"]) > 0
            assert "full" in (await answer.json())["detail"]
        # What Redis holds can still be read.
        got = await api.http.get(f"/v1/jobs/{job_id}", headers=api.auth("acme"))
        assert got.status == 200
        await redis.config_set("maxmemory", 0)
        again = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}})
        assert again.status == 202
    finally:
        await api.http.close()
        await redis.aclose()
