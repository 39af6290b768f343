"""A worker started against a local 3-master Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import Client
from runtime.client.jobs import Jobs
from runtime.registry import load
from streams.connection import Redis
from tests.redis_cluster import RedisCluster
from tests.runtime.helpers import SAMPLE, hosting, read_ledger, wait_until

pytestmark = pytest.mark.cluster


async def test_a_worker_on_the_cluster_handles_every_functions_jobs(
    cluster_redis: Redis, shared_cluster: RedisCluster, ledger: Path
) -> None:
    # Before the cluster client, every job of a partition on another node than the
    # URL's failed with MOVED.
    registry = load(SAMPLE)
    client = Client(cluster_redis, registry)
    ids = set()
    for fn in registry:
        for w in range(4):  # workspaces over both partitions of batch-tasks
            ids.add((await client.publish(fn.name, workspace=f"w{w}", data={"n": w})).id)
    # Promoted by the worker's own scheduler, woken over the sharded channel.
    later = await client.publish("batch-tasks", workspace="w1", data={"n": 9}, delay_ms=300)
    jobs = Jobs(cluster_redis, registry)

    async def all_completed() -> bool:
        done = [(await jobs.counts(fn.name)).completed for fn in registry]
        return sum(done) == len(ids) + 1

    async with hosting(shared_cluster.url, list(registry), scheduler=True):
        await wait_until(all_completed, 30, "every job completed on the cluster")
    assert set(read_ledger(ledger)) == ids | {later.id}
