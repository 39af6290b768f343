"""Start-up checks of the server's durability settings."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runtime.health import report_server
from streams.connection import Redis, connect
from streams.server import server_config
from tests.conftest import settings_for
from tests.redis_server import RedisServer


async def test_production_settings_carry_no_risk(server: RedisServer) -> None:
    client = connect(settings_for(server.url))
    try:
        config = await server_config(client)
    finally:
        await client.aclose()
    assert (config.maxmemory_policy, config.appendonly, config.appendfsync) == (
        "noeviction",
        "yes",
        "always",
    )
    assert config.risks() == []


async def test_eviction_and_no_aof_are_named_as_risks(redis: Redis) -> None:
    await redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        risks = (await server_config(redis)).risks()
    finally:
        await redis.config_set("maxmemory-policy", "noeviction")
    assert len(risks) == 2
    assert "allkeys-lru" in risks[0]
    assert "appendonly is no" in risks[1]


async def test_the_report_warns_loudly(redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runtime.health")
    await report_server(redis, "test-url", asyncio.Event())
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("redis 7") and "appendonly=no" in m for m in messages)
    assert any(m.startswith("RISK OF LOSING JOBS: appendonly is no") for m in messages)


async def test_the_report_gives_up_quietly_on_stop_while_redis_is_down(
    server: RedisServer,
) -> None:
    server.stop()
    client = connect(settings_for(server.url, retries=0))
    stop = asyncio.Event()
    report = asyncio.create_task(report_server(client, server.url, stop))
    try:
        # It keeps retrying while Redis is down; proving an absence needs a bound.
        done, _ = await asyncio.wait([report], timeout=0.2)
        assert not done
        stop.set()
        async with asyncio.timeout(10):
            await report
    finally:
        await client.aclose()
