"""Pausing a function partition: a flag its workers look at before each read.

Paused, nothing new starts; publishes, promotion and retries go on, so the
stream fills and drains again on resume. Jobs already running finish.
"""

from __future__ import annotations

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys


async def set_paused(client: Redis, keys: PartitionKeys, paused: bool) -> None:
    with wrap_unavailable():
        if paused:
            await client.set(keys.paused, 1)
        else:
            await client.delete(keys.paused)


async def is_paused(client: Redis, keys: PartitionKeys) -> bool:
    with wrap_unavailable():
        return bool(await client.exists(keys.paused))
