"""Settle handled jobs: XACK + XDEL + job state + counters for a whole batch, one Lua call.

What happened to each job is one of five outcomes, each a Struct with the fields
it needs; `settle` is the one place they become the script's arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never, final

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Arg, Script

_SETTLE = Script.beside(__file__, "settle.lua", uses=["record", "links"], allow_oom=True)


class _Settled(msgspec.Struct, frozen=True, tag=True):
    """What every outcome names: the delivery, its job, and the attempts it ended."""

    entry_id: str
    job_id: str
    workspace: str
    # The attempt that ended (or, when none ran, the attempts before this delivery).
    attempt: int


@final
class Completed(_Settled, frozen=True):
    """The handler returned."""

    # How long the handler ran (ms): the record keeps it, its start is told from it.
    ran_ms: int = 0
    # The job's business key and tags (`sluice.streams.keys.links`), released now.
    links: str = ""
    # The handler's result, msgpack-encoded (empty: none).
    result: bytes = b""


@final
class Retried(_Settled, frozen=True):
    """The attempt failed and another follows after `delay_ms` (Redis's clock)."""

    error: str
    # The next attempt's envelope.
    envelope: bytes
    delay_ms: int
    # The priority it waits at (streams.envelope).
    priority: int
    links: str = ""


@final
class Deferred(_Settled, frozen=True):
    """Over the rate limits: waits, no attempt charged, nothing counted as failed."""

    # Its own envelope, back to the delayed set.
    envelope: bytes
    priority: int
    links: str = ""
    # How long it waits from the settle, unless `due_ms` (the Redis time its
    # rate-limit slot comes) is given, which wins: the settle is later than the
    # slot was reckoned from.
    delay_ms: int = 0
    due_ms: int = 0


@final
class Dead(_Settled, frozen=True):
    """Dead-lettered: out of attempts, rejected, poison, or a payload it cannot take."""

    error: str
    # The dead letter's envelope (with every error).
    letter: bytes
    links: str = ""
    # How long its last attempt ran (ms; 0: none ran).
    ran_ms: int = 0


@final
class Expired(_Settled, frozen=True):
    """Picked up after its expiry: recorded, never run."""

    links: str = ""


Outcome = Completed | Retried | Deferred | Dead | Expired


class Settled(msgspec.Struct, frozen=True):
    count: int
    # Entries no longer pending for this consumer (reclaimed by another): not settled.
    fenced: list[str]


async def settle(
    client: Redis,
    keys: PartitionKeys,
    consumer: str,
    retention_ms: int,
    outcomes: Sequence[Outcome],
    owned_limit: int,
    retention_count: int = 0,
    *,
    dead_retention_ms: int | None = None,
    dead_retention_count: int = 0,
) -> Settled:
    """Settle `outcomes`, fenced to what `consumer` still owns.

    Records of completed jobs are kept `retention_ms`, and at most the newest
    `retention_count` (0: no limit); dead ones as long as their dead letter, which
    is kept `dead_retention_ms` (None: no limit) and among the newest
    `dead_retention_count` (0: no limit), unless replayed or purged before; a
    retry waits in the delayed set like a delayed publish.

    `owned_limit` bounds the scan of the consumer's pending list; pass the number
    of entries it holds, so one scan fences the whole batch.
    """
    if not outcomes:
        return Settled(0, [])
    order = [_entry_order(o.entry_id) for o in outcomes]
    (low_ms, low_seq), (high_ms, high_seq) = min(order), max(order)
    completed, others, linked = _arguments(outcomes)
    args: list[Arg] = [
        GROUP,
        consumer,
        retention_ms,
        max(owned_limit, len(outcomes)) + 1,
        f"{low_ms}-{low_seq}",
        f"{high_ms}-{high_seq}",
        len(completed) // 5,
        len(others) // 10,
        retention_count,
        -1 if dead_retention_ms is None else dead_retention_ms,
        dead_retention_count,
        *completed,
        *others,
        *linked,
    ]
    reply = await _SETTLE(
        client,
        [
            keys.stream,
            keys.stats,
            keys.dead,
            keys.jobs,
            keys.done,
            keys.delayed,
            keys.keyed,
            keys.tagged,
            keys.wake,
            keys.started,
        ],
        args,
    )
    assert isinstance(reply, list)
    count, fenced = reply
    return Settled(int(count), [eid.decode() for eid in fenced])


def _entry_order(entry_id: str) -> tuple[int, int]:
    """A stream id as the (ms, seq) pair Redis orders it by; its text does not sort."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _arguments(outcomes: Sequence[Outcome]) -> tuple[list[Arg], list[Arg], list[Arg]]:
    """The script's arguments for `outcomes` (see settle.lua's header): completed
    jobs, the common case, as 5 each; the others as 10, the state word and the
    fields that state uses (blank where it uses none); and a triple for each job
    with links or a result."""
    completed: list[Arg] = []
    others: list[Arg] = []
    linked: list[Arg] = []
    state: str
    error: str
    envelope: bytes
    # Milliseconds from the settle, or "@" and the Redis time it is due.
    wait: Arg
    priority: int
    for o in outcomes:
        if type(o) is Completed:
            # The common case, ahead of the match: a class pattern costs as much
            # as the rest of this loop's work for a job (measured on Python 3.11).
            completed += (o.entry_id, o.job_id, o.workspace, o.attempt, o.ran_ms)
            if o.links or o.result:
                linked += (o.job_id, o.links, o.result)
            continue
        match o:
            case Retried():
                state, error, envelope, wait = "retry", o.error, o.envelope, o.delay_ms
                priority = o.priority
            case Deferred():
                state, error, envelope, priority = "defer", "", o.envelope, o.priority
                wait = f"@{o.due_ms}" if o.due_ms else o.delay_ms
            case Dead():
                state, error, envelope, wait, priority = "dead", o.error, o.letter, 0, 1
            case Expired():
                state, error, envelope, wait, priority = "expired", "", b"", 0, 1
            case _:
                assert_never(o)
        others += (o.entry_id, o.job_id, o.workspace, state, o.attempt)
        others += (error, envelope, wait, priority, o.ran_ms if type(o) is Dead else 0)
        if o.links:
            linked += (o.job_id, o.links, b"")
    return completed, others, linked
