"""A paused function (runtime.client.pauses) as a worker sees it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from sluice.runtime import Client, Event, Job, function
from sluice.runtime.client.pauses import Pauses
from sluice.runtime.registry import Registry, load
from sluice.streams.connection import Redis
from sluice.streams.keys import PartitionKeys
from sluice.streams.pause import set_paused
from tests.conftest import Target
from tests.runtime.helpers import (
    SAMPLE,
    hosting,
    total_counts,
    wait_completed,
    wait_until,
    worker_in_process,
)
from tests.sample_functions import Task


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


async def test_a_worker_started_while_its_function_is_paused_reads_nothing_until_resumed(
    redis: Redis, long_target: Target, ledger: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    keys = PartitionKeys("tasks", 0)
    await Client(redis, load(SAMPLE)).publish_many(
        "tasks", [Event(workspace="acme", data={"n": i}) for i in range(5)]
    )
    await set_paused(redis, keys, True)
    async with worker_in_process(long_target.url, "tasks"):

        async def noticed() -> bool:
            return any(r.getMessage() == f"{keys}: paused" for r in caplog.records)

        await wait_until(noticed, what="the worker to see the pause")
        # It looked before its first read: not one job was read.
        assert (await total_counts(redis, "tasks")).waiting == 5
        await set_paused(redis, keys, False)
        await wait_completed(redis, "tasks", 5)


class Gate:
    """Each job's start, in order; the handlers wait for `open` before they return."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.open = asyncio.Event()

    async def run(self, job: Job[Task]) -> None:
        self.started.append(job.id)
        await self.open.wait()


async def test_no_job_starts_after_the_pause_returned_beyond_those_read_before_it(
    redis: Redis, long_target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """With a steady backlog, the jobs started after `pause` returned are at most
    those the worker had read into memory by then (its reader's capacity)."""
    caplog.set_level(logging.INFO)
    gate = Gate()
    gated = function("gated", input=Task, batch_size=10, concurrency=4)(gate.run)
    registry = Registry([gated])
    keys = PartitionKeys("gated", 0)
    events = [Event(workspace=f"w{i % 7}", data={"n": i}) for i in range(1000)]
    await Client(redis, registry).publish_many("gated", events)
    async with hosting(long_target.url, [gated]):
        # Every lane runs a job that waits; the reader fills what it may hold.
        capacity = 2 * 10 + 4

        async def full() -> bool:
            active = (await total_counts(redis, "gated")).active
            return len(gate.started) == 4 and active == capacity

        await wait_until(full, what="the lanes busy and the reader full")
        await Pauses(redis, registry).pause("gated")
        started_before = len(gate.started)
        gate.open.set()

        async def noticed() -> bool:
            return any(r.getMessage() == f"{keys}: paused" for r in caplog.records)

        await wait_until(noticed, what="the worker to see the pause")

        async def settled() -> bool:
            return (await total_counts(redis, "gated")).completed == len(gate.started)

        await wait_until(settled, what="the started jobs to finish")
        after = len(gate.started) - started_before
        assert after <= capacity - 4, f"{after} jobs started after the pause returned"
        await Pauses(redis, registry).resume("gated")
        await wait_completed(redis, "gated", 1000)
