"""The ingress on a local 3-master Redis Cluster: publish, job status, queues,
readiness and Prometheus over HTTP, with a worker handling what was published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.streams.connection import Redis
from tests.ingress.conftest import Api, start_api
from tests.redis_cluster import RedisCluster
from tests.runtime.helpers import read_ledger, wait_until, worker_in_process

pytestmark = pytest.mark.cluster


@pytest.fixture
async def cluster_api(cluster_redis: Redis, shared_cluster: RedisCluster) -> AsyncIterator[Api]:
    started = await start_api(cluster_redis, shared_cluster.url)
    yield started
    await started.http.close()


async def test_the_ingress_serves_a_cluster(
    cluster_api: Api, shared_cluster: RedisCluster, ledger: Path
) -> None:
    api = cluster_api
    assert (await api.http.get("/readyz")).status == 200
    # acme's jobs of batch-tasks (2 partitions) sit on one primary, other's maybe another.
    ids = []
    for who in ("acme", "other"):
        events = [{"workspace": who, "data": {"n": i}} for i in range(20)]
        answer = await api.post("/v1/events/batch-tasks", events, who=who)
        assert answer.status == 202
        ids += [(who, job["id"]) for job in (await answer.json())["jobs"]]
    async with worker_in_process(shared_cluster.url, "batch-tasks"):

        async def handled() -> bool:
            return set(read_ledger(ledger)) >= {job_id for _, job_id in ids}

        await wait_until(handled, what="every job handled")
    for who, job_id in ids[::10]:
        answer = await api.http.get(f"/v1/jobs/{job_id}", headers=api.auth(who))
        assert answer.status == 200
        assert (await answer.json())["state"] == "completed"
    queues = await api.http.get("/v1/queues", headers=api.auth("admin"))
    (queue,) = [q for q in (await queues.json())["queues"] if q["function"] == "batch-tasks"]
    assert queue["counts"]["completed"] == 40
    metrics = await api.http.get("/metrics", headers=api.auth("admin"))
    assert metrics.status == 200
