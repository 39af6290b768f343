"""The consumers of a function partition's group, as Redis sees them (XINFO CONSUMERS):
who read from it, when last, and how many entries each holds unsettled."""

from __future__ import annotations

from typing import Any

import msgspec
import redis.exceptions

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import GROUP, PartitionKeys


class Consumer(msgspec.Struct, frozen=True):
    name: str
    # Entries delivered to it and not yet settled (running, or left by a dead worker).
    pending: int
    # Milliseconds since it last read or claimed (a blocked read counts from its start).
    idle_ms: int


async def consumers(client: Redis, keys: PartitionKeys) -> list[Consumer]:
    """The group's consumers; none before a stream was written or a worker joined."""
    with wrap_unavailable():
        try:
            found: Any = await client.xinfo_consumers(keys.stream, GROUP)
        except redis.exceptions.ResponseError:
            return []  # no stream or no group yet
    # redis-py gives each as {"name": b"...", "pending": n, "idle": ms}.
    return [Consumer(c["name"].decode(), int(c["pending"]), int(c["idle"])) for c in found]
