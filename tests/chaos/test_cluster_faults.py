"""A primary of a 3-master cluster SIGKILLed under a worker: restarted (no replicas),
with `appendfsync always` no acknowledged job is lost; failed over to its replica,
the worker resumes (what asynchronous replication lost is reported)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster as RedisClusterClient

from sluice.runtime import Client, RedisUnavailable
from sluice.runtime.client.jobs import Jobs
from sluice.runtime.registry import load
from sluice.streams.connection import connect
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
            await asyncio.to_thread(cluster.wait_ok)  # the worker runs on this loop
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


async def test_a_failover_to_a_replica_resumes_work_and_reports_what_it_cost(
    tmp_path: Path, ledger: Path
) -> None:
    cluster = RedisCluster(tmp_path, replicas=1, appendonly=True)
    cluster.start()
    redis = connect(settings_for(cluster.url, retries=0))
    registry = load(SAMPLE)
    client = Client(redis, registry)
    jobs = Jobs(redis, registry)
    before: set[str] = set()
    try:
        for i in range(200):
            before.add((await client.publish("tasks", workspace="w", data={"n": i})).id)
        assert isinstance(redis, RedisClusterClient)
        address = redis.get_node_from_key(keys_for(redis, "tasks", "w").stream)
        assert address is not None
        (owner,) = (node for node in cluster.nodes if node.port == address.port)
        async with hosting(cluster.url, registry.select(["tasks"]), scheduler=True) as health:

            async def some_done() -> bool:
                return (await jobs.counts("tasks")).completed >= 20

            await wait_until(some_done, what="work before the failover")
            owner.kill()
            killed = time.monotonic()
            await wait_unavailable(health)
            # The replica takes over once the others agree its master failed (2 s).
            await asyncio.to_thread(cluster.wait_failed_over, owner.port)
            after: set[str] = set()
            async with asyncio.timeout(30):
                while len(after) < 20:
                    try:
                        receipt = await client.publish("tasks", workspace="w", data={"n": -1})
                    except RedisUnavailable:
                        await asyncio.sleep(0.1)  # retried as a caller would
                        continue
                    after.add(receipt.id)

            async def resumed() -> bool:
                return after <= set(read_ledger(ledger))

            await wait_until(resumed, timeout_s=60, what="jobs published after the failover")
            resumed_s = time.monotonic() - killed
        handled = read_ledger(ledger)
        lost = before - set(handled)
        duplicates = sum(n - 1 for n in handled.values())
        print(
            f"failover to a replica: {len(lost)} of {len(before)} acknowledged jobs lost, "
            f"{duplicates} handled twice, work resumed {resumed_s:.1f} s after the kill"
        )
    finally:
        await redis.aclose()
        cluster.stop()
