"""Write jobs into a function partition: job record + stream entry or delayed set, one Lua call."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys, links
from sluice.streams.lua import Arg, Script

_PUBLISH = Script.beside(__file__, "publish.lua", uses=["record", "admit", "links"])

# How many unread entries of one workspace the stream holds before its further
# jobs wait in the backlog (admit.lua), unless a function sets its own.
DEFAULT_SHARE = 100


class Outgoing(msgspec.Struct, frozen=True):
    """One job to write, and when it is due."""

    envelope: env.Envelope
    # Due at this epoch ms (Redis's clock), or `delay_ms` from the write; the
    # job goes straight to the stream when that is not in the future.
    due_ms: int = 0
    delay_ms: int = 0


class Written(msgspec.Struct, frozen=True):
    """The outcome of one job's publish."""

    job_id: str
    # False when a job with this id already existed; nothing was written for it.
    created: bool
    # True when the job waits in the delayed set for its due time.
    delayed: bool = False
    # True when it waits in its workspace's backlog for a place in the stream.
    backlogged: bool = False


async def publish(
    client: Redis, keys: PartitionKeys, jobs: Sequence[Outgoing], share: int = DEFAULT_SHARE
) -> list[Written]:
    """Write `jobs` (all of this partition) in one atomic call.

    Returns only after Redis confirmed the write. An id that exists already is
    reported as not created, so a retried publish never makes a second job. A job
    with a business key replaces the key's job if that has not started yet. Past
    `share` unread entries of its workspace, a job waits in the backlog.
    """
    if not jobs:
        return []
    args: list[Arg] = [GROUP, share]
    for job in jobs:
        e = job.envelope
        linked = links(e.workspace, e.id, e.key, e.tags)
        args += (e.id, e.workspace, job.due_ms, job.delay_ms, env.encode(e), linked, e.priority)
    reply = await _PUBLISH(
        client,
        [
            keys.stream,
            keys.stats,
            keys.jobs,
            keys.delayed,
            keys.keyed,
            keys.tagged,
            keys.backlog,
            keys.share,
            keys.wake,
        ],
        args,
    )
    assert isinstance(reply, list)
    return [
        Written(job.envelope.id, bool(outcome), outcome == 1, outcome == 2)
        for job, outcome in zip(jobs, reply, strict=True)
    ]
