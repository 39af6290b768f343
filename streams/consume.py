"""Read jobs from a function partition's stream through the consumer group."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import redis.exceptions

from streams.connection import Redis
from streams.errors import wrap_unavailable
from streams.keys import GROUP, PartitionKeys


class Delivery(msgspec.Struct, frozen=True):
    """One stream entry handed to this consumer."""

    entry_id: str
    envelope: bytes
    # How many times the group has delivered this entry, this delivery included.
    deliveries: int = 1


async def ensure_group(client: Redis, keys: PartitionKeys) -> None:
    """Create the consumer group (and the stream) if missing.

    The group starts at id 0, so jobs published before any worker ever ran are
    read too; "$" would silently skip them.
    """
    with wrap_unavailable():
        try:
            await client.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def read(
    client: Redis, keys: PartitionKeys, consumer: str, count: int, block_ms: int
) -> list[Delivery]:
    """Block up to `block_ms` for new entries, return at most `count`.

    A missing group (a fresh or flushed server) is recreated and the read retried,
    so a worker survives a Redis that lost its data instead of failing forever.
    """
    with wrap_unavailable():
        try:
            reply: Any = await client.xreadgroup(
                GROUP, consumer, {keys.stream: ">"}, count=count, block=block_ms
            )
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await ensure_group(client, keys)
            return []
    if not reply:
        return []
    # As sent (see streams.connection): {stream: [[entry id, [b"e", envelope]], ...]}
    (entries,) = cast(dict[bytes, list[tuple[bytes, list[bytes]]]], reply).values()
    return [Delivery(eid.decode(), fields[1]) for eid, fields in entries]
