"""One function partition, as the parts of its loop share it (runtime.worker.loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from typing import Any

from sluice.runtime.declare import Function
from sluice.runtime.health import RedisHealth
from sluice.runtime.registry import partition_keys
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.consume import ensure_group
from sluice.streams.errors import RedisUnavailable

log = logging.getLogger(__name__)


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

    async def lost(self, entry_ids: Collection[str]) -> None:
        """Redis lost the partition's data (streams.errors.GroupMissing): let go of
        `entry_ids`, which went with it, and recreate the consumer group.

        They are no longer this worker's, as if fenced: retried, their settles and
        claims would fail forever, and the reader, waiting for the room they take,
        would never read again. Their jobs are lost with the data; calls of them
        still running finish, and their outcomes are dropped in turn.
        """
        dropped = 0
        for eid in entry_ids:
            if self.held.pop(eid, None) is not None:
                dropped += 1
            self.suspects.discard(eid)
        if dropped:
            log.warning(
                "%s: Redis lost this partition's stream and group (restarted empty, failed "
                "over, flushed): %d held jobs went with it",
                self.keys,
                dropped,
            )
        self.room.set()
        # Away again, Redis gets the group from the reader's next read instead.
        with contextlib.suppress(RedisUnavailable):
            await ensure_group(self.client, self.keys)
