"""A handler publishes, reads and cancels jobs through `current_client()`: the
worker's own connection and the deployment's whole registry."""

from __future__ import annotations

import msgspec
import pytest

from sluice.runtime import Client, Job, NotInWorker, current_client, current_settings, function
from sluice.runtime.registry import Registry, load
from sluice.streams.connection import Redis
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE, hosting, wait_completed


class Order(msgspec.Struct, frozen=True):
    n: int


class Published(msgspec.Struct, frozen=True):
    id: str
    state: str
    cancelled: tuple[str, ...]


@function("orders", input=Order)
async def place_order(job: Job[Order]) -> Published:
    client = current_client()
    # "tasks" is the deployment's, though this worker does not consume it.
    first = await client.publish(
        "tasks", workspace=job.workspace, data={"n": job.data.n}, delay_ms=60_000, tags=["o"]
    )
    await client.publish(
        "tasks", workspace=job.workspace, data={"n": job.data.n}, delay_ms=60_000, tags=["o"]
    )
    record = await client.jobs.get("tasks", first.id, workspace=job.workspace)
    assert record is not None
    cancelled = await client.jobs.cancel_tag("o", workspace=job.workspace, functions=["tasks"])
    return Published(first.id, record.state, cancelled.cancelled)


def test_outside_a_worker_current_client_and_settings_say_so() -> None:
    with pytest.raises(NotInWorker, match="current_client"):
        current_client()
    with pytest.raises(NotInWorker, match="current_settings"):
        current_settings()


async def test_a_handler_publishes_reads_and_cancels_with_the_deployments_registry(
    redis: Redis, shared_server: RedisServer
) -> None:
    registry = Registry([place_order, *load(SAMPLE)])
    receipt = await Client(redis, registry).publish("orders", workspace="ws", data=Order(7))
    async with hosting(shared_server.url, [place_order], registry=registry):
        await wait_completed(redis, "orders", 1)
    record = await Client(redis, registry).jobs.get("orders", receipt.id)
    assert record is not None
    result = msgspec.convert(record.result, Published)
    assert result.state == "delayed"
    assert len(result.cancelled) == 2
    assert result.id in result.cancelled
