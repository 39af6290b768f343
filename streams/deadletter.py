"""Reading the dead-letter stream of a function partition."""

from __future__ import annotations

from typing import Any

import msgspec

from streams import envelope as env
from streams.connection import Redis
from streams.errors import wrap_unavailable
from streams.keys import PartitionKeys


class DeadLetter(msgspec.Struct, frozen=True):
    entry_id: str
    envelope: env.Envelope
    reason: str


async def dead_letters(client: Redis, keys: PartitionKeys, count: int = 100) -> list[DeadLetter]:
    """The oldest `count` dead letters of the partition."""
    with wrap_unavailable():
        entries: Any = await client.xrange(keys.dead, count=count)
    return [
        DeadLetter(eid.decode(), env.decode(fields[b"e"]), fields[b"r"].decode())
        for eid, fields in entries
    ]
