"""When active jobs started: what an active job's status shows as its start.

A write per job start would cost the hot path a round trip (or a script) per
batch for something only a status page reads. So a worker writes the starts of
the jobs still running at its metrics flush, about once a second: a job that
ends sooner costs nothing, and one that runs longer shows its start within a
second of it. A finished job's start is told by its record (streams/record.py),
so the field lives only while the job runs: settle.lua deletes it, reclaim.lua
and leave.lua when the entry changes hands.
"""

from __future__ import annotations

from collections.abc import Mapping

from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Arg, Script

_STARTED = Script.beside(__file__, "started.lua")


async def write(
    client: Redis, keys: PartitionKeys, consumer: str, ages_ms: Mapping[str, int]
) -> int:
    """Record the starts of `consumer`'s running jobs (entry id -> ms since its
    handler started); those it no longer holds are skipped. Returns how many
    were written."""
    if not ages_ms:
        return 0
    args: list[Arg] = [GROUP, consumer]
    for eid, age in ages_ms.items():
        args += (eid, age)
    written = await _STARTED(client, [keys.stream, keys.started], args)
    assert isinstance(written, int)
    return written
