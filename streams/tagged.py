"""A tag's live jobs in one partition, counted by state: a campaign's progress.

The `tagged` index holds a job from its publish until it ends (the scripts
release its links when it settles or is cancelled), so its members are the
tag's delayed, waiting and running jobs; a finished job has left it. Read in
pages, without a script: a count is a snapshot for a person to read, and a
page of ids and their records at a time keeps each call short.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.exceptions

from sluice.streams import record
from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import GROUP, PartitionKeys, tag_member

# Members read and records fetched per round trip.
PAGE = 1000


class TagCounts(msgspec.Struct, frozen=True):
    """A tag's live jobs by state."""

    delayed: int = 0
    # In the stream or a workspace's backlog, not yet read by a worker.
    waiting: int = 0
    # Read by a worker: running, or held until its rate-limit slot.
    active: int = 0

    def __add__(self, other: TagCounts) -> TagCounts:
        return TagCounts(
            self.delayed + other.delayed, self.waiting + other.waiting, self.active + other.active
        )


async def tag_counts(client: Redis, keys: PartitionKeys, workspace: str, tag: str) -> TagCounts:
    """The live jobs of `tag` in `workspace` in this partition, by state."""
    prefix = tag_member(workspace, tag, "")
    delivered = await _last_delivered(client, keys)
    delayed = waiting = active = 0
    start = f"[{prefix}".encode()
    end = f"[{prefix}".encode() + b"\xff"
    offset = 0
    while True:
        with wrap_unavailable():
            members: Any = await client.zrangebylex(keys.tagged, start, end, start=offset, num=PAGE)
            if not members:
                break
            ids = [m[len(prefix) :] for m in members]
            found: Any = await client.hmget(keys.jobs, ids)
        offset += len(members)
        for raw in found:
            if raw is None:
                continue
            r = record.parse(raw)
            if r.state == "delayed":
                delayed += 1
            elif r.state == "queued":
                # Entries up to the group's last delivered id were read (a settled
                # one is deleted with its record's state changed): held by a worker.
                if r.entry and _entry(r.entry) <= delivered:
                    active += 1
                else:
                    waiting += 1
        if len(members) < PAGE:
            break
    return TagCounts(delayed, waiting, active)


async def _last_delivered(client: Redis, keys: PartitionKeys) -> tuple[int, int]:
    with wrap_unavailable():
        try:
            groups: Any = await client.xinfo_groups(keys.stream)
        except redis.exceptions.ResponseError:
            return (-1, -1)  # no stream yet: nothing was ever read
    for group in groups:
        if group["name"] in (GROUP, GROUP.encode()):
            last = group["last-delivered-id"]
            return _entry(last.decode() if isinstance(last, bytes) else last)
    return (-1, -1)


def _entry(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
