"""A worker started against a local 3-master Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sluice.runtime import Client, Event
from sluice.runtime.client.jobs import Jobs
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.redis_cluster import RedisCluster
from tests.runtime.helpers import SAMPLE, hosting, read_ledger, start_worker, wait_until

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


async def test_sluice_worker_on_a_cluster_url_handles_jobs_and_stops_cleanly(
    cluster_redis: Redis, shared_cluster: RedisCluster, tmp_path: Path
) -> None:
    ledger, log = tmp_path / "ledger", tmp_path / "log"
    client = Client(cluster_redis, load(SAMPLE))
    events = [Event(workspace=f"w{i % 4}", data={"n": i}) for i in range(50)]
    ids = {r.id for r in await client.publish_many("batch-tasks", events)}
    worker = start_worker(shared_cluster.url, ledger, functions="batch-tasks", log=log)
    try:

        async def handled() -> bool:
            return set(read_ledger(ledger)) == ids

        await wait_until(handled, what="the worker process to handle every job")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    assert code == 0, log.read_text()
    # The start-up check reported each primary.
    assert log.read_text().count("(primary 127.0.0.1:") == len(shared_cluster.nodes)
