"""Recover the jobs of crashed or frozen workers (XAUTOCLAIM after the visibility timeout)."""

from __future__ import annotations

import msgspec

from streams.connection import Redis
from streams.consume import Delivery
from streams.keys import GROUP, PartitionKeys
from streams.lua import Script

_RECLAIM = Script.beside(__file__, "reclaim.lua")


class Reclaimed(msgspec.Struct, frozen=True):
    deliveries: list[Delivery]
    # Where the next call continues; "0-0" once the pending list was scanned through.
    cursor: str
    # Pending ids whose entries no longer existed (dropped and counted).
    lost: int


async def reclaim(
    client: Redis, keys: PartitionKeys, consumer: str, min_idle_ms: int, cursor: str, count: int
) -> Reclaimed:
    """Claim up to `count` entries idle for `min_idle_ms`, scanning on from `cursor`."""
    reply = await _RECLAIM(
        client,
        [keys.stream, keys.stats],
        [GROUP, consumer, min_idle_ms, cursor, count],
    )
    assert isinstance(reply, list)
    next_cursor, entries, lost = reply
    return Reclaimed(
        [Delivery(eid.decode(), envelope, int(n)) for eid, envelope, n in entries],
        next_cursor.decode(),
        int(lost),
    )
