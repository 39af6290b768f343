"""How close to its rate limit a function runs under steady overload, and how often
each job is deferred on the way (a job should be deferred once, at most)."""

from __future__ import annotations

import asyncio
import time

import msgspec

from bench.functions import LIMITED_RATE, Ping
from bench.worker import completed, start_worker, stop, until_all_completed
from sluice.runtime import Client, Event
from sluice.streams.connection import Redis
from sluice.streams.jobs import counts
from sluice.streams.keys import PartitionKeys


class Held(msgspec.Struct, frozen=True):
    # Jobs completed per second between the 10th and the 90th percent of the run.
    jobs_per_s: float
    limit_per_s: float
    # Promotions from the delayed set per job: each is one deferral.
    deferrals_per_job: float


async def limit_held(
    client: Client,
    redis: Redis,
    url: str,
    n: int,
    *,
    function: str = "noop-rate",
    partitions: int = 1,
    workspaces: int = 10,
) -> Held:
    """`n` jobs of `workspaces` at once against a global limit, two worker processes
    (each also a scheduler, as by default); completions sampled every 20 ms. The
    skewed case: "noop-rate-spread", 4 partitions, all of one workspace."""
    parts = [PartitionKeys(function, p) for p in range(partitions)]
    workers = [start_worker(url, function, {}, scheduler=True) for _ in range(2)]
    try:
        events = [
            Event(workspace=f"ws{i % workspaces}", data=Ping(sent_ns=0, body="x")) for i in range(n)
        ]
        await client.publish_many(function, events)
        marks: dict[int, float] = {}
        low, high = n // 10, n - n // 10
        # The count lives in Redis, written by the worker processes.
        while (done := await completed(redis, parts)) < high:
            for mark in (low, high):
                if done >= mark and mark not in marks:
                    marks[mark] = time.perf_counter()
            await asyncio.sleep(0.02)
        marks.setdefault(low, time.perf_counter())
        marks[high] = time.perf_counter()
        await until_all_completed(redis, parts, n, 0.02)
        promoted = sum([(await counts(redis, keys)).promoted for keys in parts])
    finally:
        for worker in workers:
            stop(worker)
    rate = (high - low) / (marks[high] - marks[low])
    return Held(rate, LIMITED_RATE, promoted / n)
