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


# A consumer holding nothing is deleted once idle this many visibility timeouts
# (or reads' blocks, if longer). A live worker's consumer is seen at each of its
# reads, at least once a block while it has room (a worker without room holds
# entries, and a consumer holding any is never deleted), so only a process gone
# stays unseen this long. One deleted while live anyway (a paused function's
# worker waits without reading) loses nothing, holding nothing, and its next
# read makes it again, a read blocked at the time included (Redis serves it).
STALE_TIMEOUTS = 3


def stale_after_ms(visibility_ms: int, block_ms: int) -> int:
    """How long a consumer holding nothing may stay idle before it is deleted."""
    return STALE_TIMEOUTS * max(visibility_ms, block_ms)


async def reclaim(
    client: Redis,
    keys: PartitionKeys,
    consumer: str,
    min_idle_ms: int,
    cursor: str,
    count: int,
    *,
    stale_ms: int,
) -> Reclaimed:
    """Claim up to `count` entries idle for `min_idle_ms`, scanning on from `cursor`.

    Also deletes the other consumers that hold nothing and were idle for `stale_ms`
    (`stale_after_ms`).
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
