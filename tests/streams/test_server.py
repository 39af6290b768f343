"""Start-up checks of the server's durability settings."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis import Redis as SyncRedis

from sluice.runtime.health import report_server
from sluice.streams.connection import Redis, connect
from sluice.streams.errors import RedisUnavailable
from sluice.streams.server import ping_primaries, server_config, server_configs
from tests.conftest import settings_for
from tests.redis_cluster import RedisCluster
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
    caplog.set_level(logging.INFO, logger="sluice.runtime.health")
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


async def test_every_primary_of_a_cluster_is_checked(
    cluster_redis: Redis, shared_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # One node set to evict: before, one random node was asked (or all merged).
    risky = SyncRedis(port=shared_cluster.nodes[2].port)
    risky.config_set("maxmemory-policy", "allkeys-lru")
    try:
        configs = await server_configs(cluster_redis)
        caplog.set_level(logging.INFO, logger="sluice.runtime.health")
        await report_server(cluster_redis, "test-url", asyncio.Event())
    finally:
        risky.config_set("maxmemory-policy", "noeviction")
        risky.close()
    assert sorted(configs) == sorted(f"127.0.0.1:{n.port}" for n in shared_cluster.nodes)
    policies = {name: c.maxmemory_policy for name, c in configs.items()}
    assert policies.pop(f"127.0.0.1:{shared_cluster.nodes[2].port}") == "allkeys-lru"
    assert set(policies.values()) == {"noeviction"}
    risks = [r.getMessage() for r in caplog.records if "RISK" in r.getMessage()]
    assert any(f":{shared_cluster.nodes[2].port}" in r and "allkeys-lru" in r for r in risks)


async def test_a_cluster_answers_only_when_every_primary_does(
    shared_cluster: RedisCluster,
) -> None:
    # A short call timeout: the pause stays well within the nodes' 2 s failure timeout.
    client = connect(settings_for(shared_cluster.url, retries=0, call_timeout_s=0.3))
    try:
        await ping_primaries(client)
        shared_cluster.nodes[1].pause()
        try:
            with pytest.raises(RedisUnavailable):
                await ping_primaries(client)
        finally:
            shared_cluster.nodes[1].resume()
        await ping_primaries(client)
    finally:
        await client.aclose()
