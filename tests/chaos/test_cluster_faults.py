"""A primary of a 3-master cluster SIGKILLed and restarted under a worker (no replicas):
with `appendfsync always` no acknowledged job is lost, and the worker resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster as RedisClusterClient

from runtime import Client, RedisUnavailable
from runtime.client.jobs import Jobs
from runtime.registry import load
from streams.connection import connect
from tests.conftest import settings_for
from tests.redis_cluster import RedisCluster
from tests.runtime.helpers import (
    SAMPLE,
    hosting,
    keys_for,
    read_ledger,
    wait_unavailable,
    wait_until,
)

# A private cluster with AOF and a restart: about 10 s, so with --long only.
pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.slow]

FUNCTIONS = ["tasks", "batch-tasks"]


async def test_a_primary_killed_and_restarted_loses_no_acknowledged_job(
    tmp_path: Path, ledger: Path
) -> None:
    cluster = RedisCluster(tmp_path, appendonly=True)
    cluster.start()
    redis = connect(settings_for(cluster.url, retries=0))
    registry = load(SAMPLE)
    client = Client(redis, registry)
    jobs = Jobs(redis, registry)
    acknowledged: set[str] = set()

    async def publish(start: int, n: int) -> None:
        for i in range(start, start + n):
            for function in FUNCTIONS:
                try:
                    receipt = await client.publish(function, workspace=f"w{i % 4}", data={"n": i})
                except RedisUnavailable:
                    continue  # not acknowledged: the caller would retry
                acknowledged.add(receipt.id)

    try:
        await publish(0, 100)
        # The primary of "tasks" (one partition): its jobs all live there.
        assert isinstance(redis, RedisClusterClient)
        address = redis.get_node_from_key(keys_for(redis, "tasks", "w0").stream)
        assert address is not None
        (owner,) = (node for node in cluster.nodes if node.port == address.port)
        async with hosting(cluster.url, registry.select(FUNCTIONS), scheduler=True) as health:

            async def some_done() -> bool:
                return (await jobs.counts("tasks")).completed >= 20

            await wait_until(some_done, what="work before the kill")
            owner.kill()
            await wait_unavailable(health)
            await publish(100, 20)  # the other primaries still take theirs
            owner.start()
            cluster.wait_ok()
            await publish(120, 50)

            async def all_handled() -> bool:
                try:
                    return acknowledged <= set(read_ledger(ledger))
                except RedisUnavailable:
                    return False

            await wait_until(all_handled, timeout_s=60, what="every acknowledged job handled")
    finally:
        await redis.aclose()
        cluster.stop()
