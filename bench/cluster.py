"""Drain by 1, 2 and 4 worker processes against a local 3-master Redis Cluster
(runtime.testing.cluster), beside the raw limit of the same run on one of its
shards: how drain scales with processes and shards."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import msgspec

from bench.functions import Ping
from bench.raw import CHUNK, raw_drain_rate, raw_publish_rate
from bench.worker import SPEC, start_worker, stop, until_all_completed
from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.runtime.testing.cluster import running_cluster
from sluice.streams.connection import RedisSettings, connect
from sluice.streams.keys import PartitionKeys

# Worker processes under one supervisor (`sluice worker --processes N`).
PROCESSES = (1, 2, 4)
# "noop-spread": a partition on each primary (streams.keys.spread_tag).
FUNCTION, PARTITIONS = "noop-spread", 3


class ClusterDrains(msgspec.Struct, frozen=True):
    # XREADGROUP + XACK on one stream, so on one of the cluster's shards.
    raw_drain_rate: float
    # Jobs/s of a no-op single-job handler over 3 partitions (one a primary), by
    # worker processes.
    drain_rate_processes: dict[int, float]


async def cluster_drains(n: int) -> ClusterDrains:
    """`n` jobs of 100 workspaces (so in every partition) drained by 1, 2 and 4
    worker processes, each timed from the first settlement; the raw drain first."""
    with tempfile.TemporaryDirectory() as folder, running_cluster(Path(folder)) as cluster:
        redis = connect(RedisSettings(url=cluster.url))
        try:
            await raw_publish_rate(redis, n)
            raw = await raw_drain_rate(redis, n)
            client = Client(redis, load(SPEC))
            parts = [PartitionKeys(FUNCTION, p, PARTITIONS) for p in range(PARTITIONS)]
            events = [
                Event(workspace=f"ws{i % 100}", data=Ping(sent_ns=0, body="x" * 40))
                for i in range(n)
            ]
            rates: dict[int, float] = {}
            for processes in PROCESSES:
                cluster.flush()
                for offset in range(0, n, CHUNK):
                    await client.publish_many(FUNCTION, events[offset : offset + CHUNK])
                worker = start_worker(cluster.url, FUNCTION, {}, processes=processes)
                try:
                    first = await until_all_completed(redis, parts, 1, 0.002)
                    start = time.perf_counter()
                    done = await until_all_completed(redis, parts, n, 0.05)
                    rates[processes] = (done - first) / (time.perf_counter() - start)
                finally:
                    stop(worker)
        finally:
            await redis.aclose()
    return ClusterDrains(raw, rates)
