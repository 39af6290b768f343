"""The partition layouts a function's jobs may lie in, and what is left in a
partition of an earlier one.

A function's partition count decides which partition each workspace's jobs go
to, and on a cluster the keys of every partition (streams.keys.spread_tag). When
the count changes, jobs already stored stay where the old count put them: the
workers remember every count in use (`keys.layouts`, a SET in the catalogue's
slot) and drain the partitions of the others that their own lacks
(runtime.worker.drains) until nothing is left there, then forget that count.

A partition both counts have (on a single server partition p keeps its keys at
any count) is read by the workers' own loops, but a workspace the new count maps
elsewhere still has jobs there, which a lookup by business key or tag (looking in
the workspace's partition of each count) finds only while the old count is known:
so a count whose shared partitions may hold such jobs is `held` a while longer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys, layouts, layouts_held
from sluice.streams.lua import Script

_RETIRED = Script.beside(__file__, "retired.lua")

# How long past the last delayed job it held a drained count is kept for the jobs
# a shared partition keeps of it: its queued and backlogged ones run well within
# it, and a retry waits at most the default backoff cap (an hour). A job of it
# still there later (retried again, or after a longer delay its handler asked
# for) is found by id, no longer by its business key or tags.
HELD_AFTER_MS = 3_600_000


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
        async with client.pipeline(transaction=False) as pipe:
            pipe.srem(layouts(function), count)
            pipe.hdel(layouts_held(function), count)
            await pipe.execute()


def strays(partition: int, old: int, new: int) -> bool:
    """Whether `partition` of `old` partitions, which `new` partitions also have,
    may hold jobs of a workspace that `new` maps to another (keys.partition_of: a
    workspace's crc32 modulo the count): never when `new` divides `old`."""
    step = old * new // math.gcd(old, new)
    return any(x % new != partition for x in range(partition, step, old))


async def held(client: Redis, function: str, count: int, delayed: Sequence[str]) -> bool:
    """Whether a drained `count` stays among `function`'s layouts for the jobs of
    its that partitions of the current count keep (`strays`), whose `delayed` sets
    are given: until HELD_AFTER_MS past the latest due time those held when first
    asked (by Redis's clock). A job published there later under the old count (a
    publisher not yet replaced) may be missed by key and tag lookups after that."""
    key = layouts_held(function)
    with wrap_unavailable():
        until = await client.hget(key, str(count))
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        if until is None:
            last = now_ms
            for name in delayed:
                top = await client.zrange(name, -1, -1, withscores=True)
                if top:
                    last = max(last, int(top[0][1]))
            await client.hsetnx(key, str(count), last + HELD_AFTER_MS)
            until = await client.hget(key, str(count))
    return until is not None and now_ms < int(until)


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
