"""Read jobs from a function partition's stream through the consumer group.

After each read, `refill` lets the workspaces' backlogs into the places their
entries left in the stream (streams/admit.lua), and for a function with rate
limits takes capacity for the jobs about to start. It is a call of its own, off
the read's path: a Lua read would convert every entry to Lua and back, which
cost more than the plain XREADGROUP itself in Redis (bench profile).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import msgspec
import redis.exceptions

from sluice.streams.connection import Redis
from sluice.streams.errors import GroupMissing, wrap_unavailable
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Arg, Script, packed
from sluice.streams.publish import DEFAULT_SHARE
from sluice.streams.ratelimit import Ask, Grant

_REFILL = Script.beside(__file__, "refill.lua", uses=["record", "admit", "limits"], allow_oom=True)


class Delivery(msgspec.Struct, frozen=True):
    """One stream entry handed to this consumer."""

    entry_id: str
    envelope: bytes
    # How many times the group has delivered this entry, this delivery included.
    deliveries: int = 1
    # The workspace the entry counts against (admit.lua); "" for an entry written
    # without one.
    workspace: str = ""
    # For an entry taken over from a lost worker: how often its handler started
    # since (streams.suspects).
    starts: int = 0


async def ensure_group(client: Redis, keys: PartitionKeys) -> None:
    """Create the consumer group (and the stream) if missing.

    The group starts at id 0, so jobs published before any worker ever ran are
    read too; "$" would silently skip them. The first publish or promotion into a
    stream makes the group with it (streams/lib/admit.lua), because a full Redis
    refuses XGROUP CREATE, even for a group that exists: then a group that exists
    is joined (reads go on), and a missing one (Redis lost its data) raises
    `RedisFull` for the caller to retry.
    """
    with wrap_unavailable():
        try:
            await client.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.OutOfMemoryError:
            if not await _group_exists(client, keys):
                raise
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def _group_exists(client: Redis, keys: PartitionKeys) -> bool:
    try:
        groups: Any = await client.xinfo_groups(keys.stream)
    except redis.exceptions.ResponseError:
        return False  # no stream
    return any(g["name"] in (GROUP, GROUP.encode()) for g in groups)


async def read(
    client: Redis, keys: PartitionKeys, consumer: str, count: int, block_ms: int
) -> list[Delivery]:
    """Block up to `block_ms` for new entries, return at most `count`.

    A missing group (a fresh or flushed server) is recreated and the read retried,
    so a worker survives a Redis that lost its data instead of failing forever.
    """
    try:
        with wrap_unavailable():
            reply: Any = await client.xreadgroup(
                GROUP, consumer, {keys.stream: ">"}, count=count, block=block_ms
            )
    except GroupMissing:
        await ensure_group(client, keys)
        return []
    return _deliveries(reply)


async def read_unless_paused(
    client: Redis, keys: PartitionKeys, consumer: str, count: int, block_ms: int
) -> tuple[list[Delivery], bool]:
    """`read`, and whether the partition is paused (streams.pause) once it returned.

    The flag is asked in the same round trip, after the read: Redis runs the two
    in order, so "not paused" means the entries were handed over before any pause
    was set, and "paused" that they may have come after it: the caller must not
    start them. A pause therefore holds from the moment its call returns, whatever
    the worker was doing, with no wait for a periodic look at the flag.
    """
    pipe = client.pipeline(transaction=False)
    pipe.xreadgroup(GROUP, consumer, {keys.stream: ">"}, count=count, block=block_ms)
    pipe.exists(keys.paused)
    try:
        with wrap_unavailable():
            reply, paused = await pipe.execute()
    except GroupMissing:
        await ensure_group(client, keys)
        return [], False
    return _deliveries(reply), bool(paused)


def _deliveries(reply: Any) -> list[Delivery]:
    if not reply:
        return []
    # As sent (see streams.connection): {stream: [[entry id, [b"e", envelope]], ...]}
    (entries,) = cast(dict[bytes, list[tuple[bytes, list[bytes]]]], reply).values()
    # Fields: e envelope w workspace.
    return [
        Delivery(eid.decode(), fields[1], 1, fields[3].decode() if len(fields) > 3 else "")
        for eid, fields in entries
    ]


class Read(msgspec.Struct, frozen=True):
    """What one read took, for its `refill`."""

    # Entries per workspace.
    taken: dict[str, int]
    # True when the read got fewer than it asked for.
    drained: bool


def taken(deliveries: list[Delivery]) -> dict[str, int]:
    """Entries read per workspace, for `refill`."""
    counts: dict[str, int] = {}
    for d in deliveries:
        if d.workspace:
            counts[d.workspace] = counts.get(d.workspace, 0) + 1
    return counts


async def refill(
    client: Redis,
    keys: PartitionKeys,
    taken: Mapping[str, int],
    drained: bool,
    share: int = DEFAULT_SHARE,
    ask: Ask | None = None,
) -> dict[str, Grant]:
    """Tell the partition a read took `taken` entries per workspace; `drained` when
    it got fewer than it asked for, which lets the counts be checked and healed.

    With `ask`, the same call takes rate capacity for the jobs about to start and
    returns the workspaces that got less than they asked (the others got all).
    """
    args: list[Arg] = [GROUP, share, int(drained), packed([*taken]), packed([*taken.values()])]
    if ask is not None and ask.jobs:
        args += ask.args()
    reply = await _REFILL(
        client,
        [
            keys.stream,
            keys.jobs,
            keys.backlog,
            keys.share,
            keys.stats,
            keys.rate,
            keys.limits,
            keys.deferrals,
            keys.deferlog,
        ],
        args,
    )
    assert isinstance(reply, list)
    return ask.grants(reply) if ask is not None and ask.jobs else {}
