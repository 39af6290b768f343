"""A full Redis (maxmemory reached, noeviction) under a worker: publishes raise
`RedisFull`, the worker stays up, and every acknowledged job runs, the backlogs
included, while Redis is full or once memory returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.runtime import Client, Event, RedisFull
from sluice.runtime.registry import load
from sluice.streams.connection import Redis, connect
from sluice.streams.consume import ensure_group
from sluice.streams.keys import PartitionKeys
from tests.conftest import settings_for
from tests.redis_server import RedisServer
from tests.runtime.helpers import (
    SAMPLE,
    read_ledger,
    wait_completed,
    wait_unavailable,
    worker_in_process,
)

# "fair-tasks" lets 50 jobs of a workspace into the stream: the rest wait in its backlog.
JOBS = 150


@pytest.fixture
async def redis(server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(settings_for(server.url))
    yield client
    await client.aclose()


async def publish_then_fill(redis: Redis) -> tuple[Client, set[str]]:
    client = Client(redis, load(SAMPLE))
    receipts = await client.publish_many(
        "fair-tasks", [Event(workspace="big", data={"n": i}) for i in range(JOBS)]
    )
    # 1 byte: over `maxmemory` whatever Redis holds.
    await redis.config_set("maxmemory", 1)
    with pytest.raises(RedisFull):
        await client.publish("fair-tasks", workspace="big", data={"n": -1})
    return client, {r.id for r in receipts}


async def test_a_worker_started_on_a_full_redis_runs_every_job_while_it_is_full(
    redis: Redis, server: RedisServer, ledger: Path
) -> None:
    # The group exists (workers ran before): Redis refuses to create it again.
    await ensure_group(redis, PartitionKeys("fair-tasks", 0))
    _, ids = await publish_then_fill(redis)
    async with worker_in_process(server.url, "fair-tasks"):
        await wait_completed(redis, "fair-tasks", JOBS)
    assert set(read_ledger(ledger)) == ids


async def test_a_worker_waits_out_a_full_redis_then_runs_every_job(
    redis: Redis, server: RedisServer, ledger: Path
) -> None:
    # No group yet, and Redis too full to create one: the worker waits, up.
    client, ids = await publish_then_fill(redis)
    async with worker_in_process(server.url, "fair-tasks") as health:
        await wait_unavailable(health)
        await redis.config_set("maxmemory", 0)
        await wait_completed(redis, "fair-tasks", JOBS)
        late = await client.publish("fair-tasks", workspace="big", data={"n": -1})
        await wait_completed(redis, "fair-tasks", JOBS + 1)
    assert set(read_ledger(ledger)) == ids | {late.id}
