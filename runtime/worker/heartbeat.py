"""Heartbeats: keep the claim on held entries alive while their handlers run."""

from __future__ import annotations

import logging
from typing import NoReturn

from sluice.runtime.guard import Guard
from sluice.runtime.worker.partition import Partition
from sluice.streams.claims import extend
from sluice.streams.errors import GroupMissing

log = logging.getLogger(__name__)


async def heartbeat_forever(part: Partition, visibility_timeout_s: float) -> NoReturn:
    """Every third of the visibility timeout, reset the idle time of the held entries.

    Three beats per timeout: one lost to a Redis blip still leaves the claim alive.
    """
    keys = part.keys

    async def beat() -> None:
        if not part.held:
            return
        entry_ids = list(part.held)
        try:
            lost = (await extend(part.client, keys, part.consumer, entry_ids)).lost
        except GroupMissing:
            await part.lost(entry_ids)
            return
        if lost:
            log.warning("%s: %d held jobs were reclaimed by another worker", keys, len(lost))

    await Guard(part.health, f"{keys}: heartbeat").every(visibility_timeout_s / 3, beat)
