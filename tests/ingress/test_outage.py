"""Redis away under the ingress: publishes are answered 503 with Retry-After, quickly,
and none is reported accepted that was not written; once Redis is back, 202 again."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio

from sluice.runtime import Jobs
from sluice.streams.connection import RedisSettings, connect
from tests.ingress.conftest import registry, start_api
from tests.redis_server import RedisServer

WRITE_TIMEOUT_S = 1.0


async def test_publishes_get_503_while_redis_is_away_and_202_after(server: RedisServer) -> None:
    redis = connect(
        RedisSettings(url=server.url, connect_timeout_s=0.3, socket_timeout_s=0.5, retries=1)
    )
    api = await start_api(redis, server.url, WRITE_TIMEOUT_S)
    try:
        accepted: list[str] = []

        async def publish(n: int) -> int:
            event = {"workspace": "acme", "data": {"n": n}, "id": f"job-{n}"}
            answer = await api.post("/v1/events/tasks", event)
            if answer.status == 202:
                accepted.append(event["id"])  # type: ignore[arg-type]
            else:
                assert answer.status == 503
                assert answer.headers["Retry-After"]
                assert (await answer.json())["status"] == 503
            return answer.status

        assert await publish(0) == 202
        for halt in (server.pause, server.kill):
            halt()
            started = time.perf_counter()
            statuses = await asyncio.gather(*(publish(n) for n in range(1, 6)))
            # Bounded: the write timeout and a little, never a hang.
            assert time.perf_counter() - started < WRITE_TIMEOUT_S + 2
            assert set(statuses) == {503}
            if halt == server.pause:
                server.resume()
            else:
                server.start()
        # The paused server may have taken writes answered 503 (the client may
        # publish them again under their ids); none answered 202 is missing.
        assert await publish(100) == 202
        jobs = Jobs(redis, registry())
        for job_id in accepted:
            assert await jobs.get("tasks", job_id, workspace="acme") is not None
    finally:
        await api.http.close()
        await redis.aclose()


async def test_a_write_redis_never_answers_is_503_at_the_write_timeout(
    server: RedisServer,
) -> None:
    # The socket would wait far longer: the ingress's own deadline answers.
    redis = connect(RedisSettings(url=server.url, socket_timeout_s=60.0))
    api = await start_api(redis, server.url, WRITE_TIMEOUT_S)
    try:

        async def publish(n: int) -> tuple[int, float]:
            started = time.perf_counter()
            event = {"workspace": "acme", "data": {"n": n}, "id": f"late-{n}"}
            answer = await api.post("/v1/events/tasks", event)
            return answer.status, time.perf_counter() - started

        assert (await publish(0))[0] == 202
        server.pause()
        first = asyncio.gather(*(publish(n) for n in range(1, 4)))
        # Later requests, while the first ones' deadline is watched, get their own.
        # A fixed sleep on purpose: what is tested is requests arriving half a
        # timeout apart; there is no event to await instead.
        await asyncio.sleep(WRITE_TIMEOUT_S / 2)
        later = await asyncio.gather(*(publish(n) for n in range(4, 6)))
        for status, waited in [*await first, *later]:
            assert status == 503
            assert WRITE_TIMEOUT_S * 0.9 <= waited < WRITE_TIMEOUT_S + 1.5
        server.resume()
        # The stalled write completes on the same connection; publishing works again.
        assert (await publish(100))[0] == 202
    finally:
        await api.http.close()
        await redis.aclose()


async def test_a_refused_password_is_named_by_readyz_and_the_503s(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis.asyncio.Redis(port=server.port)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    wrong = connect(RedisSettings(url=f"redis://:wrong@127.0.0.1:{server.port}/0", retries=0))
    api = await start_api(wrong, server.url)
    try:
        answer = await api.http.get("/readyz")
        body = await answer.json()
        assert answer.status == 503
        assert body["detail"].startswith("Redis refused the credentials: wrong password")
        answer = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}})
        assert answer.status == 503
        assert any("Redis refused the credentials" in r.getMessage() for r in caplog.records)
    finally:
        await api.http.close()
        await wrong.aclose()
