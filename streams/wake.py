"""Wake-up calls for schedulers: a sharded pub/sub subscription to partitions' wake channels.

Publish and settle scripts announce a job due earlier than any other of its
partition; a scheduler asleep until a later time hears it and wakes at once.
A message lost while disconnected costs at most the scheduler's re-check interval.

The channels are sharded (SPUBLISH, SSUBSCRIBE; Redis 7): a channel carries its
partition's hash tag, so on a cluster its messages stay on the node that owns the
partition, where a plain PUBLISH would be sent to every node. A cluster subscriber
holds one connection per node that owns a subscribed channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable

_MESSAGES = ("message", "smessage")


class WakeListener:
    """Subscribed to `channels`; `wait` returns those woken within a timeout."""

    def __init__(self, client: Redis, channels: Sequence[str]) -> None:
        self.client = client
        self.channels = list(channels)
        # redis-py re-subscribes these on its own after reconnecting (on a cluster,
        # on the channel's new node after a failover or a slot moved).
        self.pubsub: PubSub = client.pubsub(ignore_subscribe_messages=True)
        self.subscribed = False
        # One read in flight per node connection, kept across calls of `wait`: a read
        # cancelled mid-reply would cost its connection and the subscriptions on it.
        self.reads: dict[PubSub, asyncio.Task[str | None]] = {}

    async def wait(self, timeout_s: float) -> set[str]:
        """Block up to `timeout_s` for a wake-up; return the channels heard."""
        woken: set[str] = set()
        with wrap_unavailable():
            if not self.subscribed:
                if isinstance(self.client, RedisCluster):
                    await self.client.initialize()  # which node owns which channel
                await self.pubsub.ssubscribe(*self.channels)
                self.subscribed = True
            nodes = self._node_subscriptions()
            for gone in set(self.reads) - set(nodes):
                self.reads.pop(gone).cancel()
            for node in nodes:
                if node not in self.reads:
                    self.reads[node] = asyncio.create_task(_next_wake(node, timeout_s))
            await asyncio.wait(
                self.reads.values(), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            for node, read in list(self.reads.items()):
                if read.done():
                    del self.reads[node]
                    channel = read.result()
                    if channel is not None:
                        woken.add(channel)
        return woken

    def _node_subscriptions(self) -> list[PubSub]:
        if isinstance(self.pubsub, ClusterPubSub):
            return list(self.pubsub.node_pubsub_mapping.values())
        return [self.pubsub]

    async def close(self) -> None:
        for read in self.reads.values():
            read.cancel()
        await asyncio.gather(*self.reads.values(), return_exceptions=True)
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py


async def _next_wake(node: PubSub, timeout_s: float) -> str | None:
    """The channel of the next wake message on `node`'s connection, or None once
    `timeout_s` passed without one (subscription confirmations are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left_s := deadline - loop.time()) >= 0:
        message = await node.get_message(ignore_subscribe_messages=True, timeout=left_s)
        if message is not None and message["type"] in _MESSAGES:
            channel: bytes = message["channel"]
            return channel.decode()
    return None
