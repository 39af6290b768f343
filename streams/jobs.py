"""Job records and per-partition counts, read for status pages and tests."""

from __future__ import annotations

from typing import Literal

import msgspec

from streams.connection import Redis
from streams.errors import wrap_unavailable
from streams.keys import GROUP, PartitionKeys
from streams.lua import Script

_STATUS = Script.beside(__file__, "status.lua")

JobState = Literal["queued", "active", "completed", "failed", "dead"]


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    function: str
    workspace: str
    state: JobState
    # Redis time (ms) the job entered the stream, and settled (0 while unsettled).
    queued_ms: int
    finished_ms: int = 0
    attempts: int = 0
    error: str = ""
    # While active: the consumer holding it and how often it has been delivered.
    consumer: str = ""
    deliveries: int = 0


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """Jobs of one partition by state. Terminal states are totals since the start."""

    waiting: int
    active: int
    completed: int
    failed: int
    dead: int
    published: int
    # Settlements refused because another consumer had reclaimed the entry.
    fenced: int
    # Pending entries found deleted from the stream.
    lost: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{f: getattr(self, f) + getattr(other, f) for f in self.__struct_fields__})


async def get_job(client: Redis, keys: PartitionKeys, job_id: str) -> JobRecord | None:
    reply = await _STATUS(client, [keys.jobs, keys.stream], [GROUP, job_id])
    if not reply:
        return None
    assert isinstance(reply, list)
    record, consumer, deliveries = reply
    # "state|workspace|entry id|queued ms|attempts|finished ms|dead id|error", as
    # the scripts write it; the error comes last, so it may hold any character.
    state, workspace, _, queued, attempts, finished, _, error = record.decode().split("|", 7)
    if state == "queued" and consumer:
        state = "active"
    return JobRecord(
        id=job_id,
        function=keys.function,
        workspace=workspace,
        state=msgspec.convert(state, JobState),
        queued_ms=int(queued),
        finished_ms=int(finished),
        attempts=int(attempts),
        error=error,
        consumer=consumer.decode() if consumer else "",
        deliveries=int(deliveries),
    )


async def counts(client: Redis, keys: PartitionKeys) -> Counts:
    """Counts of one partition; waiting = entries in the stream not yet delivered."""
    with wrap_unavailable():
        async with client.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.stream)
            pipe.hgetall(keys.stats)
            pipe.xpending(keys.stream, GROUP)
            length, stats, pending = await pipe.execute(raise_on_error=False)
    active = pending["pending"] if isinstance(pending, dict) else 0
    stat = {k.decode(): int(v) for k, v in stats.items()}
    return Counts(
        waiting=length - active,
        active=active,
        completed=stat.get("completed", 0),
        failed=stat.get("failed", 0),
        dead=stat.get("dead", 0),
        published=stat.get("published", 0),
        fenced=stat.get("fenced", 0),
        lost=stat.get("lost", 0),
    )
