"""A state's jobs over every function, newest first: the partitions' newest marks
(streams.recent) merged, a page at a time, behind one opaque cursor.

The cursor is the last mark shown (or, for waiting jobs past the streams, a place
in the backlogs), as base64url JSON: opaque to a caller, and decoded into typed
Structs with bounds before Redis sees any of it, so anything else a client sends
back is `InvalidCursor`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated

import msgspec

from sluice.runtime.errors import InvalidCursor
from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.jobs import JobRecord, get_job
from sluice.streams.keys import PartitionKeys
from sluice.streams.listing import Listable, Page
from sluice.streams.reads import side_by_side
from sluice.streams.recent import Mark, backlog, newest

# Within int64 (msgspec's bounds): every stream id Redis hands out is.
_MAX = 2**63 - 1
Text = Annotated[str, msgspec.Meta(max_length=400)]


class _Below(msgspec.Struct, frozen=True, array_like=True, tag="k"):
    """Next: the marks below this one."""

    ms: Annotated[int, msgspec.Meta(ge=0, le=_MAX)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=_MAX)]
    source: Text
    member: Text


class _Backlog(msgspec.Struct, frozen=True, array_like=True, tag="b"):
    """Next: the backlog of partition `index` (in `_sources` order) from `start`."""

    index: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    start: Annotated[int, msgspec.Meta(ge=0, le=10**15)]


_Cursor = _Below | _Backlog
_decoder = msgspec.json.Decoder(_Cursor)


async def page_all(
    redis: Redis,
    registry: Registry,
    state: Listable,
    *,
    workspace: str | None,
    cursor: str,
    limit: int,
) -> Page:
    """A page of every function's jobs in `state` (of `workspace`, if given)."""
    sources = [
        keys
        for name in sorted(fn.name for fn in registry)
        for keys in registry.partitions(name, workspace, cluster=is_cluster(redis))
    ]
    position = _decode(cursor) if cursor else None
    if isinstance(position, _Backlog):
        if position.index >= len(sources):
            raise InvalidCursor(f"cursor {cursor!r} is not one a page of this listing returned")
        return await _backlogs(redis, sources, position, workspace, limit)
    below = (
        None
        if position is None
        else Mark(position.ms, position.seq, position.source, position.member)
    )
    parts = await side_by_side(newest(redis, k, state, below, limit) for k in sources)
    marks = sorted((m for part in parts for m in part), reverse=True)
    taken = marks[:limit]
    by_tag = {keys.tag: keys for keys in sources}
    records = await side_by_side(get_job(redis, by_tag[m.source], m.job_id) for m in taken)
    jobs = _kept(records, state, workspace)
    if len(marks) > limit or any(len(part) == limit for part in parts):
        last = taken[-1]
        return Page(jobs, _encode(_Below(last.ms, last.seq, last.source, last.member)))
    if state == "waiting":
        return Page(jobs, _encode(_Backlog(0, 0)))
    return Page(jobs, "")


async def _backlogs(
    redis: Redis,
    sources: list[PartitionKeys],
    position: _Backlog,
    workspace: str | None,
    limit: int,
) -> Page:
    """Waiting jobs in the partitions' backlogs, partition by partition."""
    index, start = position.index, position.start
    while True:
        keys = sources[index]
        ids = await backlog(redis, keys, start, limit)
        records = await side_by_side(get_job(redis, keys, job_id) for job_id in ids)
        jobs = _kept(records, "waiting", workspace)
        if len(ids) == limit:
            return Page(jobs, _encode(_Backlog(index, start + limit)))
        index, start = index + 1, 0
        if index == len(sources):
            return Page(jobs, "")
        if jobs:
            return Page(jobs, _encode(_Backlog(index, 0)))


def _kept(
    records: Sequence[JobRecord | None], state: Listable, workspace: str | None
) -> list[JobRecord]:
    """The records still in `state` (a job may have moved since its mark was read);
    "retrying" is a delayed job with failed attempts."""
    wanted = {"waiting": "queued", "retrying": "delayed"}.get(state, state)
    return [
        r
        for r in records
        if r is not None
        and r.state == wanted
        and (state != "retrying" or r.attempts > 0)
        and (workspace is None or r.workspace == workspace)
    ]


def _encode(position: _Cursor) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).decode()


def _decode(cursor: str) -> _Cursor:
    try:
        return _decoder.decode(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, msgspec.DecodeError) as e:
        raise InvalidCursor(f"cursor {cursor!r} is not one a page of this listing returned") from e
