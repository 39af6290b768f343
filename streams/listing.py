"""Listing a partition's jobs by state, a page at a time, with a cursor.

Each state is read from where such jobs live: delayed ones (and "retrying",
the delayed ones with failed attempts) from the delayed set by due time,
waiting and active ones from the stream (waiting ones then from the workspaces'
backlogs, cursor "b<offset>"), finished ones from
the retention index (newest first), dead ones from the dead-letter stream. The
cursor is a position in that source; a job that moves meanwhile may be missed
or shown twice, which suits a status page. A cursor comes back from a client,
so it is checked before Redis sees it: anything but a position this listing
hands out is `InvalidCursor`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.errors import InvalidCursor, wrap_unavailable
from sluice.streams.jobs import JobRecord, get_job
from sluice.streams.keys import PartitionKeys
from sluice.streams.reads import side_by_side

# "retrying": delayed jobs with failed attempts, waiting for their next one.
Listable = Literal[
    "delayed", "retrying", "waiting", "active", "completed", "cancelled", "expired", "dead"
]

# An offset into a sorted set (bounded: ZRANGE takes a 64-bit integer), and a
# stream entry id "<ms>-<seq>", each part a 64-bit unsigned integer.
_OFFSET = re.compile(r"[0-9]{1,15}")
_ENTRY = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_U64 = 2**64 - 1


class Page(msgspec.Struct, frozen=True):
    jobs: list[JobRecord]
    # Pass back for the next page; empty when there is none.
    cursor: str


async def list_jobs(
    client: Redis, keys: PartitionKeys, state: Listable, cursor: str, limit: int
) -> Page:
    """Up to `limit` jobs in `state` from `cursor` on ("" for the start)."""
    ids, following = await _ids(client, keys, state, cursor, limit)
    records = await side_by_side(get_job(client, keys, job_id) for job_id in ids)
    if state == "retrying":
        # Read from the delayed set like "delayed": a page may hold fewer than `limit`.
        jobs = [r for r in records if r is not None and r.state == "delayed" and r.attempts]
    else:
        wanted = "queued" if state == "waiting" else state
        jobs = [r for r in records if r is not None and r.state == wanted]
    return Page(jobs, following)


async def _ids(
    client: Redis, keys: PartitionKeys, state: Listable, cursor: str, limit: int
) -> tuple[list[str], str]:
    with wrap_unavailable():
        if state in ("delayed", "retrying", "completed", "cancelled", "expired"):
            start = offset(cursor, state)
            key = keys.delayed if state in ("delayed", "retrying") else keys.done
            found: Any = await client.zrange(key, start, start + limit - 1, desc=key == keys.done)
            ids = [i.decode() for i in found]
            return ids, str(start + limit) if len(ids) == limit else ""
        if state == "waiting" and cursor.startswith("b"):
            # "b" alone is no position ("b0" is the backlog's first): refused as itself.
            return await _backlog_ids(client, keys, offset(cursor[1:] or cursor, state), limit)
        _check_entry(cursor, state)
        stream = keys.dead if state == "dead" else keys.stream
        entries: Any = await client.xrange(stream, min=f"({cursor}" if cursor else "-", count=limit)
    ids = [job_id for _, fields in entries if (job_id := _job_id(fields[b"e"]))]
    if len(entries) == limit:
        return ids, entries[-1][0].decode()
    if state == "waiting":
        return ids, "b0"
    return ids, ""


def offset(cursor: str, state: str) -> int:
    """A cursor that is a position in a sorted set ("" for the first)."""
    if not cursor:
        return 0
    if not _OFFSET.fullmatch(cursor):
        raise InvalidCursor(f"cursor {cursor!r} is not one a {state} page returned")
    return int(cursor)


def _check_entry(cursor: str, state: str) -> None:
    """A cursor that is the stream entry id a page ended on ("" for the first)."""
    entry = _ENTRY.fullmatch(cursor)
    if cursor and (entry is None or max(int(entry[1]), int(entry[2])) > _U64):
        raise InvalidCursor(f"cursor {cursor!r} is not one a {state} page returned")


async def _backlog_ids(
    client: Redis, keys: PartitionKeys, start: int, limit: int
) -> tuple[list[str], str]:
    """Backlogged job ids, by workspace, priority and age (see streams/admit.lua)."""
    with wrap_unavailable():
        members: Any = await client.zrange(keys.backlog, start, start + limit - 1)
    ids = [m.rpartition(b"|")[2].decode() for m in members]
    return ids, f"b{start + limit}" if len(ids) == limit else ""


def _job_id(data: bytes) -> str:
    # An entry that does not decode has no job to show (the worker dead-letters it).
    try:
        return env.decode(data).id
    except msgspec.DecodeError:
        return ""
