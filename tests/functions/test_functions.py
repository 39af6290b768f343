"""The deployment's functions: listed, valid examples, and they run on a real worker."""

from __future__ import annotations

import asyncio
import logging

import pytest

from functions import FUNCTIONS
from sluice.runtime import Client
from sluice.runtime.client.current import worker_context
from sluice.runtime.health import RedisHealth
from sluice.runtime.registry import Registry
from sluice.runtime.settings import from_env
from sluice.runtime.worker.host import WorkerHost
from sluice.streams.connection import Redis, RedisSettings, connect
from tests.redis_server import RedisServer
from tests.runtime.helpers import total_counts, wait_until


def test_every_function_has_an_example_that_validates() -> None:
    for fn in FUNCTIONS:
        assert fn.example is not None, fn.name
        assert isinstance(fn.example, fn.input)


async def test_the_examples_run_end_to_end(
    redis: Redis, shared_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="functions")
    registry = Registry(FUNCTIONS)
    client = Client(redis, registry)
    for fn in FUNCTIONS:
        await client.publish(fn.name, workspace="ws", data=fn.example)
    settings = from_env({}, redis=RedisSettings(url=shared_server.url), block_ms=500)
    worker_client = connect(settings.redis)
    stop = asyncio.Event()
    host = WorkerHost(worker_client, list(registry), settings, RedisHealth(shared_server.url))
    # The reminders' handlers publish with the worker's client (runtime.current_client).
    task = asyncio.create_task(
        host.run(stop), context=worker_context(Client(worker_client, registry))
    )

    async def done() -> bool:
        totals = [await total_counts(redis, fn.name) for fn in FUNCTIONS]
        return all(t.completed == 1 for t in totals)

    try:
        await wait_until(done, what="each example handled")
    finally:
        stop.set()
        await task
        await worker_client.aclose()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("functions")]
    assert any("sms" in m and "+15550100" in m for m in messages)
    assert any("email batch of 1" in m for m in messages)
