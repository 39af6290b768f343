"""A worker whose Redis comes back empty (AOF off, a failover to an empty replica,
FLUSHALL): the jobs it held are gone with the data, and it reads on."""

from __future__ import annotations

import asyncio

import pytest

from sluice.runtime import Client, Event, Job, function
from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis
from tests.conftest import Target
from tests.runtime.helpers import hosting, total_counts, wait_completed, wait_until
from tests.sample_functions import Task


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


async def test_a_worker_whose_redis_lost_its_data_drops_what_it_held_and_reads_again(
    redis: Redis, long_target: Target
) -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def run(job: Job[Task]) -> None:
        started.append(job.id)
        await release.wait()

    held = function("held", input=Task, batch_size=2, concurrency=1)(run)
    client = Client(redis, Registry([held]))
    capacity = 2 * 2 + 1
    await client.publish_many("held", [Event(workspace="ws", data={"n": n}) for n in range(8)])
    async with hosting(long_target.url, [held]):

        async def full() -> bool:
            return len(started) == 1 and (await total_counts(redis, "held")).active == capacity

        # The lane runs a job that waits; the reader holds all it may.
        await wait_until(full, what="the lane busy and the reader full")
        await redis.flushall()
        # The outcomes of jobs Redis no longer has: their settles find no group.
        release.set()
        await client.publish_many("held", [Event(workspace="ws", data={"n": n}) for n in range(3)])
        await wait_completed(redis, "held", 3, timeout_s=10)
