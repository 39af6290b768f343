"""Recover the jobs of crashed or frozen workers (XAUTOCLAIM after the visibility timeout)."""

from __future__ import annotations

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.consume import Delivery
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Script

_RECLAIM = Script.beside(__file__, "reclaim.lua")


class Reclaimed(msgspec.Struct, frozen=True):
    deliveries: list[Delivery]
    # Where the next call continues; "0-0" once the pending list was scanned through.
    cursor: str
    # Pending ids whose entries no longer existed (dropped and counted).
    lost: int
    # Consumers deleted because they held nothing and were idle too long.
    forgotten: int


# A consumer holding nothing, idle this long, belongs to a process long gone.
STALE_CONSUMER_MS = 3_600_000


async def reclaim(
    client: Redis,
    keys: PartitionKeys,
    consumer: str,
    min_idle_ms: int,
    cursor: str,
    count: int,
    stale_ms: int = STALE_CONSUMER_MS,
) -> Reclaimed:
    """Claim up to `count` entries idle for `min_idle_ms`, scanning on from `cursor`.

    Also deletes consumers that hold nothing and were idle for `stale_ms`.
    """
    reply = await _RECLAIM(
        client,
        [keys.stream, keys.stats, keys.suspects, keys.started],
        [GROUP, consumer, min_idle_ms, cursor, count, stale_ms],
    )
    assert isinstance(reply, list)
    next_cursor, entries, lost, forgotten = reply
    return Reclaimed(
        [
            Delivery(eid.decode(), envelope, int(n), starts=int(starts))
            for eid, envelope, n, starts in entries
        ],
        next_cursor.decode(),
        int(lost),
        int(forgotten),
    )
