"""One function partition, as the parts of its loop share it (runtime.worker.loop)."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.declare import Function
from runtime.health import RedisHealth
from runtime.registry import partition_keys
from streams.connection import Redis, is_cluster


class Partition:
    """What the reader, the lanes and the settler of one partition all work with."""

    __slots__ = (
        "client",
        "consumer",
        "fn",
        "health",
        "held",
        "keys",
        "paused",
        "room",
        "suspects",
    )

    def __init__(
        self, client: Redis, fn: Function[Any], index: int, consumer: str, health: RedisHealth
    ) -> None:
        self.client = client
        self.fn = fn
        self.keys = partition_keys(fn, index, is_cluster(client))
        self.consumer = consumer
        self.health = health
        # Entries read and not yet settled (entry id -> job id): what heartbeats
        # extend, shutdown hands back, and the reader's room is counted against.
        self.held: dict[str, str] = {}
        # Entries taken over from lost workers: their start marks go once they settle.
        self.suspects: set[str] = set()
        # Set whenever held entries go: the reader waits on it for room.
        self.room = asyncio.Event()
        # The function is paused (streams.pause): the lanes start no call while set.
        self.paused = False
