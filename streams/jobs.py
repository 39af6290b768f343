"""Job records and per-partition counts, read for status pages and tests.

A job's record is written only by the scripts; its format is documented in
streams/record.py, which reads it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from redis.exceptions import ResponseError

from sluice.streams import envelope as env
from sluice.streams import record as rec
from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import GROUP, PartitionKeys, shown_id
from sluice.streams.lua import Script

_STATUS = Script.beside(__file__, "status.lua", uses=["record", "lookup"])

PRIORITY_NAMES = {env.HIGH: "high", env.NORMAL: "normal", env.LOW: "low"}

JobState = Literal["delayed", "queued", "active", "completed", "dead", "cancelled", "expired"]


class FailedAttempt(msgspec.Struct, frozen=True):
    """One failed attempt of a job: its error, and where it was raised ("": not kept)."""

    error: str
    traceback: str = ""


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    function: str
    workspace: str
    state: JobState
    # Redis time (ms) the job entered the stream (0 while delayed), and settled
    # (0 while unsettled).
    queued_ms: int = 0
    finished_ms: int = 0
    # A completed or dead job that ran: when its last attempt started (Redis time,
    # ms: the settle's time less the handler's) and how long it ran. An active
    # job: when its handler started, once it ran past its worker's next metrics
    # flush (about a second: streams.started); 0 before, and while only held.
    started_ms: int = 0
    ran_ms: int = 0
    # While delayed: when it falls due (Redis time, ms).
    due_ms: int = 0
    # Attempts that have ended; the running or next one is attempts + 1.
    attempts: int = 0
    # The last attempt's error, if it failed.
    error: str = ""
    key: str = ""
    tags: tuple[str, ...] = ()
    # What the handler returned (decoded msgpack), for a completed job.
    result: Any = None
    # While active: the consumer holding it and how often it has been delivered.
    consumer: str = ""
    deliveries: int = 0
    # Known while it waits or runs: "high", "normal" or "low".
    priority: str = "normal"
    # Its input (decoded msgpack), while its envelope is kept: delayed, waiting,
    # active, or dead with its letter in the dead-letter stream. A finished job's
    # record keeps only its result (streams/record.py), so completed, cancelled
    # and expired jobs show None.
    data: Any = None
    # Every failed attempt, oldest first, while its envelope is kept (as `data`).
    failures: tuple[FailedAttempt, ...] = ()
    # The W3C trace it was published in (32 hex digits), while its envelope is
    # kept and if its publisher traced it: where to look in the trace viewer.
    trace_id: str = ""


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """Jobs of one partition by state.

    waiting, active, delayed and dead are the jobs there now; the others are
    totals since the partition's first job.
    """

    waiting: int
    active: int
    delayed: int
    completed: int
    # Attempts that ended in an error: retried, or dead after the last one.
    failed: int
    # Letters in the dead-letter stream, waiting to be replayed or purged.
    dead: int
    cancelled: int
    # Queued past their workspace's share of the stream: waited in its backlog.
    backlogged: int
    # Picked up after their expiry time: never run.
    expired: int
    published: int
    # Moved from the delayed set to the stream when due.
    promoted: int
    # Settlements refused because another consumer had reclaimed the entry.
    fenced: int
    # Pending entries found deleted from the stream.
    lost: int
    # Dead letters queued again, and deleted for good (purged, or past their retention).
    replayed: int
    purged: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{f: getattr(self, f) + getattr(other, f) for f in self.__struct_fields__})


async def get_job(client: Redis, keys: PartitionKeys, job_id: str) -> JobRecord | None:
    """The job of stored id `job_id`, shown with the id its publisher gave or was given."""
    return await find_job(client, keys, [job_id])


async def find_job(
    client: Redis, keys: PartitionKeys, ids: Sequence[str], workspace: str = ""
) -> JobRecord | None:
    """The first job of `ids` (stored ids, see `keys.job_ref`) that is of `workspace`
    ("": any)."""
    if not ids:
        return None
    reply = await _STATUS(
        client, [keys.jobs, keys.stream, keys.dead, keys.started], [GROUP, workspace, *ids]
    )
    if not reply:
        return None
    assert isinstance(reply, list)
    stored, data, consumer, deliveries, entry, running_since = reply
    record = rec.parse(data)
    keyfield, *members = record.links.split(" ")
    result = data = None
    envelope: env.Envelope | None = None
    priority = env.NORMAL
    delayed = record.state == "delayed"
    # A delayed or backlogged job's envelope is its record's tail; it holds the
    # errors of earlier attempts. (A record cancelled in the backlog by an earlier
    # release kept its backlog place: not waiting.)
    waiting = delayed or (record.state == "queued" and bool(record.backlog))
    if waiting or (entry and record.state == "queued"):
        envelope = env.decode(record.tail if waiting else entry)
        error = envelope.errors[-1] if envelope.errors else ""
        priority = envelope.priority
        data = msgspec.msgpack.decode(envelope.payload)
    elif record.state == "completed":
        error = ""
        result = msgspec.msgpack.decode(record.tail) if record.tail else None
    else:
        error = record.tail.decode()
        if entry:  # a dead job's letter
            envelope = env.decode(entry)
            data = msgspec.msgpack.decode(envelope.payload)
    state: JobState = "active" if record.state == "queued" and consumer else record.state
    return JobRecord(
        id=shown_id(stored.decode()),
        function=keys.function,
        workspace=record.workspace,
        state=state,
        queued_ms=0 if delayed else record.at,
        due_ms=record.at if delayed else 0,
        finished_ms=record.finished,
        started_ms=int(running_since) if record.ran is None else record.finished - record.ran,
        ran_ms=record.ran or 0,
        attempts=record.attempts,
        error=error,
        key=keyfield.partition("/")[2],
        tags=tuple(m.split("/")[1] for m in members),
        result=result,
        consumer=consumer.decode() if consumer else "",
        deliveries=int(deliveries),
        priority=PRIORITY_NAMES.get(priority, "normal"),
        data=data,
        failures=() if envelope is None else failed_attempts(envelope),
        trace_id="" if envelope is None else trace_id(envelope),
    )


def trace_id(envelope: env.Envelope) -> str:
    """The trace id of the envelope's traceparent (`00-<trace id>-<span id>-<flags>`)."""
    parent = (envelope.trace or {}).get("traceparent", "")
    parts = parent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def failed_attempts(envelope: env.Envelope) -> tuple[FailedAttempt, ...]:
    """The envelope's errors, each with its traceback where one was kept."""
    # Aligned from the newest: an envelope of an older release has fewer tracebacks.
    tracebacks = ("",) * (len(envelope.errors) - len(envelope.tracebacks)) + envelope.tracebacks
    return tuple(FailedAttempt(e, t) for e, t in zip(envelope.errors, tracebacks, strict=False))


async def counts(client: Redis, keys: PartitionKeys) -> Counts:
    """Counts of one partition; waiting = entries in the stream not yet delivered,
    and jobs in the workspaces' backlogs."""
    with wrap_unavailable():
        async with client.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.stream)
            pipe.hgetall(keys.stats)
            pipe.xpending(keys.stream, GROUP)
            pipe.zcard(keys.delayed)
            pipe.xlen(keys.dead)
            pipe.zcard(keys.backlog)
            replies = await pipe.execute(raise_on_error=False)
        # Only XPENDING may fail alone (the group is made at a worker's first
        # read). A cluster pipeline also answers a broken node connection with the
        # error as a reply: raised here, in the block, as RedisUnavailable.
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception) and not (i == 2 and isinstance(reply, ResponseError)):
                raise reply
    length, stats, pending, delayed, dead, backlog = replies
    active = pending["pending"] if isinstance(pending, dict) else 0
    stat = {k.decode(): int(v) for k, v in stats.items()}
    return Counts(
        waiting=length - active + backlog,
        active=active,
        delayed=delayed,
        completed=stat.get("completed", 0),
        failed=stat.get("failed", 0),
        dead=dead,
        cancelled=stat.get("cancelled", 0),
        backlogged=stat.get("backlogged", 0),
        expired=stat.get("expired", 0),
        published=stat.get("published", 0),
        promoted=stat.get("promoted", 0),
        fenced=stat.get("fenced", 0),
        lost=stat.get("lost", 0),
        replayed=stat.get("replayed", 0),
        purged=stat.get("purged", 0),
    )
