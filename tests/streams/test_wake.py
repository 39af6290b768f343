"""The wake channel is sharded (SPUBLISH, its name in KEYS with the partition's hash
tag), so on a cluster it stays on the partition's node; on one server alike."""

from __future__ import annotations

import asyncio

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub

from sluice.runtime import Client
from sluice.runtime.registry import load, partition_keys
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import PartitionKeys
from sluice.streams.wake import WakeListener
from tests.runtime.helpers import SAMPLE


async def test_a_sooner_job_wakes_the_listener_of_its_partition(any_redis: Redis) -> None:
    # "batch-tasks" has 2 partitions; on the cluster they sit on different nodes.
    registry = load(SAMPLE)
    (fn,) = registry.select(["batch-tasks"])
    channels = [partition_keys(fn, p, is_cluster(any_redis)).wake for p in range(2)]
    listener = WakeListener(any_redis, channels)
    try:
        assert await listener.wait(0.01) == set()  # subscribed
        client = Client(any_redis, registry)
        for workspace in ("w1", "w2", "w3", "w4"):
            await client.publish("batch-tasks", workspace=workspace, data={"n": 1}, delay_ms=60_000)
        heard: set[str] = set()
        async with asyncio.timeout(10):
            while heard != set(channels):
                heard |= await listener.wait(5.0)
    finally:
        await listener.close()


async def test_the_wake_is_published_to_the_sharded_channel(any_redis: Redis) -> None:
    # Before: a plain PUBLISH, which a sharded subscriber never hears (and a cluster
    # sends to every node).
    redis = any_redis
    keys = PartitionKeys("tasks", 0)
    await redis.ping()  # a cluster client learns which node owns which slot
    pubsub = redis.pubsub()
    try:
        await pubsub.ssubscribe(keys.wake)
        await Client(redis, load(SAMPLE)).publish(
            "tasks", workspace="w", data={"n": 1}, delay_ms=60_000
        )
        async with asyncio.timeout(5):
            while True:
                message = await _message(pubsub)
                if message is not None and message["type"] == "smessage":
                    break
        assert message["channel"] == keys.wake.encode()
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _message(pubsub: PubSub) -> dict[str, object] | None:
    """The next message: a cluster's sharded ones come from the node of their channel."""
    if isinstance(pubsub, ClusterPubSub):
        return await pubsub.get_sharded_message(timeout=1.0)
    message: dict[str, object] | None = await pubsub.get_message(timeout=1.0)
    return message
