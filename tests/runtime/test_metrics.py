"""Metrics add up across workers, per function and per workspace; reset clears what was asked."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sluice.runtime import Client, Event, Metrics
from sluice.runtime.client.metrics import Minute
from sluice.runtime.registry import load
from sluice.streams import metrics as store
from sluice.streams.connection import Redis
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE, start_worker, wait_until


async def test_metrics_add_up_across_two_workers_and_reset_clears_only_what_was_asked(
    redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, metrics = Client(redis, registry), Metrics(redis, registry)
    events = [
        Event(workspace=f"ws{i % 3}", data={"n": i, "mode": "raise" if i % 10 == 0 else "ok"})
        for i in range(600)
    ]
    await client.publish_many("tasks", events)
    workers = [start_worker(shared_server.url, ledger, functions="tasks") for _ in range(2)]
    try:

        async def all_counted() -> bool:
            return (await metrics.read("tasks")).processed == 600

        await wait_until(all_counted, what="metrics of 600 jobs from both workers")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(timeout=15) == 0
    total = await metrics.read("tasks")
    assert (total.succeeded, total.failed, total.dead, total.retried) == (540, 60, 60, 0)
    assert total.batches == 600  # single-job handler: a call per job
    assert total.last_minute == 600
    assert total.p95_ms >= 1
    assert total.last_ms > 0
    per_ws = [await metrics.read("tasks", f"ws{i}") for i in range(3)]
    assert [m.processed for m in per_ws] == [200, 200, 200]
    assert sum(m.dead for m in per_ws) == 60

    await metrics.reset("tasks", "ws0")
    assert (await metrics.read("tasks", "ws0")).processed == 0
    assert (await metrics.read("tasks", "ws1")).processed == 200
    assert (await metrics.read("tasks")).processed == 600
    await metrics.reset("tasks")
    assert (await metrics.read("tasks")).processed == 0
    assert (await metrics.read("tasks", "ws1")).processed == 0


async def test_the_hour_per_minute_adds_flushes_keeps_a_newer_minute_and_forgets_older_ones(
    redis: Redis,
) -> None:
    registry = load(SAMPLE)
    (keys,) = registry.partitions("tasks", cluster=False)
    now = int(time.time()) // 60

    async def flush(minute: int, processed: int, failed: int) -> None:
        await store.flush(redis, keys, store.Batch({}, [], {}, [(minute, processed, failed)]))

    await flush(now, 3, 1)
    await flush(now, 2, 0)  # another worker, the same minute
    await flush(now - 60, 7, 7)  # a late flush for the slot's minute an hour ago
    await flush(now - 5, 4, 2)
    await flush(now - 65, 9, 9)  # late again: the slot holds a newer minute
    await flush(now - 61, 8, 8)  # kept in its slot, but over an hour ago: not shown
    hour = await Metrics(redis, registry).history("tasks")
    assert len(hour) == 60
    assert hour[-1] == Minute(now * 60_000, 5, 1)
    assert hour[-6] == Minute((now - 5) * 60_000, 4, 2)
    assert sum(m.processed for m in hour) == 9
