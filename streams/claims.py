"""Keep and give up claims on entries: heartbeat extension and leaving the group."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Script

_EXTEND = Script.beside(__file__, "extend.lua")
_LEAVE = Script.beside(__file__, "leave.lua", uses=["record", "admit"], allow_oom=True)


class Held(msgspec.Struct, frozen=True):
    """An entry a consumer holds: its stream id and the job it carries."""

    entry_id: str
    job_id: str


class Extension(msgspec.Struct, frozen=True):
    # Held entries another consumer owns now (it took them over from this one).
    lost: list[str]
    # Held entries pending for no one: settled, by this consumer while the call was
    # on its way, or by another that took them over (this one was frozen).
    gone: list[str]


class Left(msgspec.Struct, frozen=True):
    handed_back: int
    # False when entries this process never saw (a read cut off by a dropped
    # connection) were still pending: the consumer stays for reclaim to drain.
    deleted: bool


async def extend(
    client: Redis, keys: PartitionKeys, consumer: str, entry_ids: Sequence[str]
) -> Extension:
    """Reset the idle time of held entries; says which are no longer this consumer's."""
    if not entry_ids:
        return Extension([], [])
    reply = await _EXTEND(client, [keys.stream], [GROUP, consumer, *entry_ids])
    assert isinstance(reply, list)
    lost, gone = reply
    return Extension([eid.decode() for eid in lost], [eid.decode() for eid in gone])


async def leave(client: Redis, keys: PartitionKeys, consumer: str, held: Sequence[Held]) -> Left:
    """Hand `held` back to the group at once and delete the consumer if it holds nothing."""
    args = [GROUP, consumer]
    for h in held:
        args += (h.entry_id, h.job_id)
    reply = await _LEAVE(client, [keys.stream, keys.jobs, keys.share, keys.started], args)
    assert isinstance(reply, list)
    handed, deleted = reply
    return Left(int(handed), bool(deleted))
