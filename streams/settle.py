"""Settle handled jobs: XACK + XDEL + job state + counters for a whole batch, one Lua call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from streams.connection import Redis
from streams.keys import GROUP, PartitionKeys
from streams.lua import Arg, Script

_SETTLE = Script.beside(__file__, "settle.lua", uses=["record", "links"], allow_oom=True)

State = Literal["completed", "retry", "defer", "dead", "expired"]


class Settlement(msgspec.Struct, frozen=True):
    """The final word on one delivery."""

    entry_id: str
    job_id: str
    workspace: str
    state: State
    attempt: int
    error: str = ""
    # For `retry`: the next attempt's envelope; `defer`: its own; `dead`: the dead letter's.
    envelope: bytes = b""
    # For `retry` and `defer`: how long the job waits, from the settle (Redis's clock).
    delay_ms: int = 0
    # The job's business key and tags (`streams.keys.links`), released when it finishes.
    links: str = ""
    # For `completed`: the handler's result, msgpack-encoded (empty: none).
    result: bytes = b""
    # For `retry` and `defer`: the priority it waits at (streams.envelope).
    priority: int = 1
    # For `defer`: the Redis time (ms) it is due, its rate-limit slot; wins over
    # `delay_ms` (which counts from the settle, later than the slot was given).
    due_ms: int = 0


class Settled(msgspec.Struct, frozen=True):
    count: int
    # Entries no longer pending for this consumer (reclaimed by another): not settled.
    fenced: list[str]


async def settle(
    client: Redis,
    keys: PartitionKeys,
    consumer: str,
    retention_ms: int,
    settlements: Sequence[Settlement],
    owned_limit: int,
    retention_count: int = 0,
    *,
    dead_retention_ms: int | None = None,
    dead_retention_count: int = 0,
) -> Settled:
    """Settle `settlements`, fenced to what `consumer` still owns.

    Records of completed jobs are kept `retention_ms`, and at most the newest
    `retention_count` (0: no limit); dead ones as long as their dead letter, which
    is kept `dead_retention_ms` (None: no limit) and among the newest
    `dead_retention_count` (0: no limit), unless replayed or purged before; a
    retry waits in the delayed set like a delayed publish.

    `owned_limit` bounds the scan of the consumer's pending list; pass the number
    of entries it holds, so one scan fences the whole batch.
    """
    if not settlements:
        return Settled(0, [])
    order = [_entry_order(s.entry_id) for s in settlements]
    (low_ms, low_seq), (high_ms, high_seq) = min(order), max(order)
    # Completed jobs, the common case, travel as 4 arguments; the rest as 9.
    completed: list[Arg] = []
    others: list[Arg] = []
    linked: list[Arg] = []
    for s in settlements:
        if s.links or s.result:
            linked += (s.job_id, s.links, s.result)
        if s.state == "completed":
            completed += (s.entry_id, s.job_id, s.workspace, s.attempt)
        else:
            others += (
                s.entry_id, s.job_id, s.workspace, s.state, s.attempt, s.error, s.envelope,
                f"@{s.due_ms}" if s.due_ms else s.delay_ms, s.priority,
            )  # fmt: skip
    args: list[Arg] = [
        GROUP,
        consumer,
        retention_ms,
        max(owned_limit, len(settlements)) + 1,
        f"{low_ms}-{low_seq}",
        f"{high_ms}-{high_seq}",
        keys.wake,
        len(completed) // 4,
        len(others) // 9,
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
