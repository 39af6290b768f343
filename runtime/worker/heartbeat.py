"""Heartbeats: keep the claim on held entries alive while their handlers run."""

from __future__ import annotations

import logging
from typing import NoReturn

from runtime.guard import Guard
from runtime.health import RedisHealth
from streams.claims import extend
from streams.connection import Redis
from streams.keys import PartitionKeys

log = logging.getLogger(__name__)


async def heartbeat_forever(
    client: Redis,
    keys: PartitionKeys,
    consumer: str,
    held: dict[str, str],
    health: RedisHealth,
    visibility_timeout_s: float,
) -> NoReturn:
    """Every third of the visibility timeout, reset the idle time of `held` entries.

    Three beats per timeout: one lost to a Redis blip still leaves the claim alive.
    """

    async def beat() -> None:
        if not held:
            return
        lost = (await extend(client, keys, consumer, list(held))).lost
        if lost:
            log.warning("%s: %d held jobs were reclaimed by another worker", keys, len(lost))

    await Guard(health, f"{keys}: heartbeat").every(visibility_timeout_s / 3, beat)
