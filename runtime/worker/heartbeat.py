"""Heartbeats: keep the claim on held entries alive while their handlers run."""

from __future__ import annotations

import asyncio
import logging

from runtime.health import RedisHealth
from streams.claims import extend
from streams.connection import Redis
from streams.errors import RedisUnavailable
from streams.keys import PartitionKeys

log = logging.getLogger(__name__)


async def heartbeat_forever(
    client: Redis,
    keys: PartitionKeys,
    consumer: str,
    held: dict[str, str],
    health: RedisHealth,
    visibility_timeout_s: float,
) -> None:
    """Every third of the visibility timeout, reset the idle time of `held` entries.

    Three beats per timeout: one lost to a Redis blip still leaves the claim alive.
    """
    while True:
        await asyncio.sleep(visibility_timeout_s / 3)
        if not held:
            continue
        try:
            lost = (await extend(client, keys, consumer, list(held))).lost
        except RedisUnavailable as exc:
            health.down(exc)
            continue
        except Exception:
            log.exception("%s: heartbeat failed", keys)
            continue
        if lost:
            log.warning("%s: %d held jobs were reclaimed by another worker", keys, len(lost))
