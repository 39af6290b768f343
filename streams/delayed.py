"""Promote due jobs from a partition's delayed set to its stream."""

from __future__ import annotations

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Script
from sluice.streams.publish import DEFAULT_SHARE

_PROMOTE = Script.beside(__file__, "promote.lua", uses=["record", "admit"], allow_oom=True)


class Promoted(msgspec.Struct, frozen=True):
    moved: int
    # Until the next job falls due, by Redis's clock; None when none waits.
    next_due_in_ms: int | None
    # With `traced`: (job id, W3C traceparent) of the moved jobs that carry one.
    traces: list[tuple[str, str]] = []


async def promote_due(
    client: Redis,
    keys: PartitionKeys,
    limit: int,
    share: int = DEFAULT_SHARE,
    traced: bool = False,
) -> Promoted:
    """Move up to `limit` jobs that are due by Redis's clock; any number of callers
    may race. Past `share` unread entries of its workspace, a job waits in the backlog."""
    reply = await _PROMOTE(
        client,
        [keys.delayed, keys.jobs, keys.stream, keys.stats, keys.backlog, keys.share],
        [limit, share, int(traced), GROUP],
    )
    assert isinstance(reply, list)
    moved, wait, found = reply
    traces = [(found[i].decode(), found[i + 1].decode()) for i in range(0, len(found), 2)]
    return Promoted(int(moved), None if wait < 0 else int(wait), traces)
