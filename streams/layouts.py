"""The partition layouts a function's jobs may lie in, and what is left in a
partition of an earlier one.

A function's partition count decides which partition each workspace's jobs go
to, and on a cluster the keys of every partition (streams.keys.spread_tag). When
the count changes, jobs already stored stay where the old count put them: the
workers remember every count in use (`keys.layouts`, a SET in the catalogue's
slot) and drain the partitions of the others that their own lacks
(runtime.worker.drains) until nothing is left there, then forget that count.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys, layouts
from sluice.streams.lua import Script

_RETIRED = Script.beside(__file__, "retired.lua")


async def remember(client: Redis, function: str, counts: Iterable[int]) -> frozenset[int]:
    """Add `counts` to `function`'s layouts; returns every count it now has."""
    key = layouts(function)
    with wrap_unavailable():
        async with client.pipeline(transaction=False) as pipe:
            pipe.sadd(key, *counts)
            pipe.smembers(key)
            _, members = await pipe.execute()
    return frozenset(int(m) for m in members)


async def known(client: Redis, function: str) -> frozenset[int]:
    """The counts `function`'s jobs may lie in (none: only its declared one)."""
    with wrap_unavailable():
        members = await client.smembers(layouts(function))
    return frozenset(int(m) for m in members)


async def forget(client: Redis, function: str, count: int) -> None:
    with wrap_unavailable():
        await client.srem(layouts(function), count)


class Left(msgspec.Struct, frozen=True):
    """What a partition of an earlier layout still holds."""

    # Jobs to run: in the stream (unread or pending), delayed, in the backlog.
    work: int
    # Job records (finished ones until the retention drops them; dead letters').
    records: int
    # Until its first delayed job is due, by Redis's clock; None when none waits.
    due_in_ms: int | None


async def left(client: Redis, keys: PartitionKeys, retention_ms: int) -> Left:
    """What is left in `keys`' partition, once its records past `retention_ms` are dropped."""
    reply = await _RETIRED(
        client, [keys.stream, keys.delayed, keys.backlog, keys.jobs, keys.done], [retention_ms]
    )
    assert isinstance(reply, list)
    work, records, due_in = reply
    return Left(int(work), int(records), None if due_in < 0 else int(due_in))
