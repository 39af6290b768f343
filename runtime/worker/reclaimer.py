"""Taking over the jobs of lost workers: entries left pending past the visibility timeout."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

from sluice.runtime.guard import Guard
from sluice.runtime.health import RedisHealth
from sluice.streams.connection import Redis
from sluice.streams.consume import Delivery, ensure_group
from sluice.streams.errors import GroupMissing
from sluice.streams.keys import PartitionKeys
from sluice.streams.reclaim import reclaim

log = logging.getLogger(__name__)


async def reclaim_forever(
    client: Redis,
    keys: PartitionKeys,
    consumer: str,
    health: RedisHealth,
    *,
    min_idle_ms: int,
    stale_ms: int,
    interval_s: float,
    batch_size: int,
    room: Callable[[], int],
    accept: Callable[[list[Delivery]], None],
) -> NoReturn:
    """Every `interval_s`, walk the pending list and `accept` what was idle too long.

    Takes at most `room()` entries at a time, so reclaiming never overfills the
    loop it feeds. Deletes the consumers of workers gone, once they hold nothing
    and were idle `stale_ms`.
    """
    cursor = "0-0"

    async def walk() -> None:
        nonlocal cursor
        while (free := room()) > 0:
            want = min(free, batch_size)
            try:
                found = await reclaim(
                    client, keys, consumer, min_idle_ms, cursor, want, stale_ms=stale_ms
                )
            except GroupMissing:
                # Redis lost its data: nothing is left to take over.
                cursor = "0-0"
                await ensure_group(client, keys)
                return
            cursor = found.cursor
            if found.forgotten:
                log.info("%s: forgot %d idle empty consumers", keys, found.forgotten)
            if found.lost:
                log.error("%s: %d pending entries were gone from the stream", keys, found.lost)
            if found.deliveries:
                log.info("%s: reclaimed %d jobs of lost workers", keys, len(found.deliveries))
                accept(found.deliveries)
            if cursor == "0-0" or not found.deliveries:
                return

    await Guard(health, f"{keys}: reclaim").every(interval_s, walk)
