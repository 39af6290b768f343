"""Which jobs were running when a worker died: a crash is charged to them alone.

A worker that dies (SIGKILL, a segfault, the OOM killer) leaves every job it held
pending, and XAUTOCLAIM counts a delivery for each, whether its handler ever ran
or not: cut by delivery count alone, one poison job takes every neighbour it was
read with to the dead letters. So a worker marks each job taken over from a lost
worker (a suspect) before its handler starts, and marks the start ended once the
handler returns (before its outcome settles, and before anything else may start
beside it): what stays counted are the starts a crash cut short, and that count,
not deliveries, is what poison is cut by. A job only held by the dead worker, or
whose call had ended, is not charged. First deliveries are not marked: that would
cost a write per job on the hot path, and a crash is rare.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys

# A mark outlives any visibility timeout; the key expires once crashes stop.
KEEP_MS = 7 * 24 * 3_600_000


async def mark_started(client: Redis, keys: PartitionKeys, entry_ids: Sequence[str]) -> None:
    """Count a handler start of each suspect entry; call before the handler runs."""
    with wrap_unavailable():
        async with client.pipeline(transaction=False) as pipe:
            for eid in entry_ids:
                pipe.hincrby(keys.suspects, eid, 1)
            pipe.pexpire(keys.suspects, KEEP_MS)
            await pipe.execute()


async def mark_ended(client: Redis, keys: PartitionKeys, entry_ids: Sequence[str]) -> None:
    """Uncount the start of each suspect entry whose handler returned: a crash from
    now on is not this call's."""
    with wrap_unavailable():
        async with client.pipeline(transaction=False) as pipe:
            for eid in entry_ids:
                pipe.hincrby(keys.suspects, eid, -1)
            await pipe.execute()


async def forget(client: Redis, keys: PartitionKeys, entry_ids: Sequence[str]) -> None:
    """Drop the marks of settled entries."""
    if entry_ids:
        with wrap_unavailable():
            await client.hdel(keys.suspects, *entry_ids)
