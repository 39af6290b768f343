"""A paused function (runtime.client.pauses) as a worker sees it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runtime import Client, Event
from runtime.registry import load
from streams.connection import Redis
from streams.keys import PartitionKeys
from streams.pause import set_paused
from tests.redis_server import RedisServer
from tests.runtime.helpers import (
    SAMPLE,
    total_counts,
    wait_completed,
    wait_until,
    worker_in_process,
)


async def test_a_worker_started_while_its_function_is_paused_reads_nothing_until_resumed(
    redis: Redis, shared_server: RedisServer, ledger: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    keys = PartitionKeys("tasks", 0)
    await Client(redis, load(SAMPLE)).publish_many(
        "tasks", [Event(workspace="acme", data={"n": i}) for i in range(5)]
    )
    await set_paused(redis, keys, True)
    async with worker_in_process(shared_server.url, "tasks"):

        async def noticed() -> bool:
            return any(r.getMessage() == f"{keys}: paused" for r in caplog.records)

        await wait_until(noticed, what="the worker to see the pause")
        # It looked before its first read: not one job was read.
        assert (await total_counts(redis, "tasks")).waiting == 5
        await set_paused(redis, keys, False)
        await wait_completed(redis, "tasks", 5)
