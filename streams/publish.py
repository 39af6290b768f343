"""Write jobs into a function partition: job hash + stream entry, one Lua call."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from streams import envelope as env
from streams.connection import Redis
from streams.keys import PartitionKeys
from streams.lua import Arg, Script

_PUBLISH = Script.beside(__file__, "publish.lua")


class Written(msgspec.Struct, frozen=True):
    """The outcome of one job's publish."""

    job_id: str
    # False when a job with this id already existed; nothing was written for it.
    created: bool


async def publish(
    client: Redis, keys: PartitionKeys, envelopes: Sequence[env.Envelope]
) -> list[Written]:
    """Write `envelopes` (all of this partition) in one atomic call.

    Returns only after Redis confirmed the write. An id that exists already is
    reported as not created, so a retried publish never makes a second job.
    """
    if not envelopes:
        return []
    args: list[Arg] = []
    for e in envelopes:
        args += (e.id, e.workspace, env.encode(e))
    reply = await _PUBLISH(client, [keys.stream, keys.stats, keys.jobs], args)
    assert isinstance(reply, list)
    return [Written(e.id, bool(eid)) for e, eid in zip(envelopes, reply, strict=True)]
