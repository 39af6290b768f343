"""The newest jobs of a state across many partitions (of many functions), a page at
a time: the listing over every function (runtime.client.jobs merges the parts).

Each job sorts by a `Mark`: the time of its place in its source (a stream entry
id for waiting, active and dead jobs, the due time for delayed ones, the finish
time for finished ones), then its source's name and its id, so the order is
total across partitions. A page is the newest marks of every partition below the
last mark shown (keyset paging: a job added meanwhile does not shift the pages;
one that moves may be missed or shown twice, as in streams.listing). Waiting
jobs held in their workspaces' backlogs have no time in order with the stream's:
they follow the stream's, partition by partition, in backlog order.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys
from sluice.streams.listing import Listable


class Mark(msgspec.Struct, frozen=True, array_like=True, order=True):
    """Where a job sorts, newest first: by (ms, seq, source, member) descending."""

    ms: int
    # The stream entry id's sequence (0 for a sorted set's member).
    seq: int
    # The partition's hash tag (`PartitionKeys.tag`).
    source: str
    # The sorted set's member, the job id ("" for a stream entry).
    member: str
    job_id: str = ""


Kind = Literal["stream", "set"]


def _source(keys: PartitionKeys, state: Listable) -> tuple[str, Kind]:
    if state in ("waiting", "active"):
        return keys.stream, "stream"
    if state == "dead":
        return keys.dead, "stream"
    return (keys.delayed if state in ("delayed", "retrying") else keys.done), "set"


async def newest(
    client: Redis, keys: PartitionKeys, state: Listable, below: Mark | None, limit: int
) -> list[Mark]:
    """Up to `limit` marks of the partition's jobs in `state`'s source below `below`
    (None: from the newest), newest first. The caller reads the records: a job
    that changed state meanwhile is dropped there."""
    key, kind = _source(keys, state)
    with wrap_unavailable():
        if kind == "stream":
            return await _stream(client, keys.tag, key, below, limit)
        return await _set(client, keys.tag, key, below, limit)


async def _stream(
    client: Redis, source: str, key: str, below: Mark | None, limit: int
) -> list[Mark]:
    top = "+"
    if below is not None:
        # A source sorting before the mark's keeps its entry of the same id.
        inclusive = source < below.source
        if not inclusive and below.ms == below.seq == 0:
            return []  # nothing is below the first id there can be
        top = f"{below.ms}-{below.seq}" if inclusive else f"({below.ms}-{below.seq}"
    entries: Any = await client.xrevrange(key, max=top, min="-", count=limit)
    marks = []
    for entry_id, fields in entries:
        job_id = _job_id(fields[b"e"])
        if job_id:
            ms, _, seq = entry_id.decode().partition("-")
            marks.append(Mark(int(ms), int(seq), source, "", job_id))
    return marks


async def _set(client: Redis, source: str, key: str, below: Mark | None, limit: int) -> list[Mark]:
    found: Any
    rank: Any = None
    if below is not None and source == below.source:
        rank = await client.zrevrank(key, below.member)
    if below is None:
        found = await client.zrange(key, 0, limit - 1, desc=True, withscores=True)
    elif rank is not None:
        # Ties of one time in one set are taken by rank: a campaign's jobs due at
        # the same minute may be many more than a page.
        found = await client.zrange(key, rank + 1, rank + limit, desc=True, withscores=True)
    else:
        top = below.ms if source < below.source else f"({below.ms}"
        found = await client.zrange(
            key, top, "-inf", desc=True, byscore=True, offset=0, num=limit, withscores=True
        )
    return [Mark(int(score), 0, source, m.decode(), m.decode()) for m, score in found]


async def backlog(client: Redis, keys: PartitionKeys, start: int, limit: int) -> list[str]:
    """Up to `limit` backlogged job ids from position `start` (streams/admit.lua's order)."""
    with wrap_unavailable():
        members: Any = await client.zrange(keys.backlog, start, start + limit - 1)
    return [m.rpartition(b"|")[2].decode() for m in members]


def _job_id(data: bytes) -> str:
    # An entry that does not decode has no job to show (the worker dead-letters it).
    try:
        return env.decode(data).id
    except msgspec.DecodeError:
        return ""
