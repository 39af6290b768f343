"""Every call waits at most the documented bound for Redis (`call_timeout_s`, by
default the socket timeout), retries included: with Redis paused, a lookup and a
publish raise `RedisUnavailable` by then, not after every retry has timed out too.
A call cut at its deadline leaves no stray reply behind for the next one."""

from __future__ import annotations

import asyncio

import pytest

from sluice.runtime import Client, Jobs, RedisUnavailable
from sluice.runtime.registry import load
from sluice.streams.connection import RedisSettings, connect
from sluice.streams.consume import ensure_group, read, read_unless_paused
from sluice.streams.keys import PartitionKeys
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE

# Four attempts of 0.5 s each (and backoff) without an overall deadline: 2 s and more.
SETTINGS = {"connect_timeout_s": 0.5, "socket_timeout_s": 0.5, "retries": 3}
# Room for a loaded machine between the bound and the asyncio deadline.
MARGIN_S = 0.6


async def test_calls_to_a_paused_redis_end_at_the_documented_bound(server: RedisServer) -> None:
    settings = RedisSettings(url=server.url, **SETTINGS)  # type: ignore[arg-type]
    redis = connect(settings)
    client, jobs = Client(redis, load(SAMPLE)), Jobs(redis, load(SAMPLE))
    try:
        kept = await client.publish("tasks", workspace="acme", data={"n": 1})
        server.pause()
        try:
            for call in (
                lambda: jobs.get("tasks", kept.id),
                lambda: client.publish("tasks", workspace="acme", data={"n": 2}),
            ):
                async with asyncio.timeout(settings.call_timeout() + MARGIN_S):
                    with pytest.raises(RedisUnavailable):
                        await call()
        finally:
            server.resume()
        # The connections cut mid-call were dropped: each reply goes to its own call.
        for _ in range(3):
            got = await jobs.get("tasks", kept.id)
            assert got is not None
            assert got.id == kept.id
            assert await jobs.get("tasks", "never-published") is None
    finally:
        await redis.aclose()


async def test_a_blocking_read_may_wait_its_block_time_beyond_the_bound(
    server: RedisServer,
) -> None:
    redis = connect(RedisSettings(url=server.url, socket_timeout_s=2.0, call_timeout_s=0.2))
    keys = PartitionKeys("tasks", 0)
    try:
        await ensure_group(redis, keys)
        # Nothing to read: Redis answers after the BLOCK of 500 ms, past the 0.2 s bound.
        assert await read(redis, keys, "c", 10, block_ms=500) == []
        # And with the pause flag asked in the same round trip (a pipeline).
        assert await read_unless_paused(redis, keys, "c", 10, block_ms=500) == ([], False)
    finally:
        await redis.aclose()
