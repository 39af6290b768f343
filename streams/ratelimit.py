"""Rate limits of a partition: take capacity (GCRA in Lua), set overrides, read deferrals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from streams.connection import Redis
from streams.errors import wrap_unavailable
from streams.keys import PartitionKeys
from streams.lua import Arg, Script, packed

_ACQUIRE = Script.beside(__file__, "ratelimit.lua")

# The override field of the partition's share of the function's global rate; a
# workspace's own override is its name ('*' is never one: keys.check_token).
GLOBAL = "*"


class Grant(msgspec.Struct, frozen=True):
    """What a workspace's jobs got from the limits."""

    granted: int
    # Until the next job may start, and between jobs at the binding rate.
    wait_ms: int
    interval_ms: int


class Deferral(msgspec.Struct, frozen=True):
    """A workspace's record of jobs deferred for the rate limits."""

    count: int
    last_ms: int
    # Jobs the workspace asked for in the call that last deferred some.
    asked: int
    # Which limit it hit: "global" or "workspace".
    limit: str


async def acquire(
    client: Redis,
    keys: PartitionKeys,
    asked: Mapping[str, int],
    *,
    global_rate: float,
    workspace_rate: float,
    burst_s: float,
) -> dict[str, Grant]:
    """Take capacity for `asked` jobs per workspace; overrides in Redis win over the rates.

    Returns the workspaces that got less than they asked for; the others got all.
    """
    workspaces = list(asked)
    args: list[Arg] = [
        global_rate,
        workspace_rate,
        burst_s,
        packed([*workspaces, GLOBAL]),
        packed(list(asked.values())),
    ]
    reply = await _ACQUIRE(client, [keys.rate, keys.limits, keys.deferrals], args)
    assert isinstance(reply, list)
    return {
        workspaces[reply[i] - 1]: Grant(reply[i + 1], reply[i + 2], reply[i + 3])
        for i in range(0, len(reply), 4)
    }


async def set_limit(client: Redis, keys: PartitionKeys, field: str, rate: float | None) -> None:
    """Override a rate (`GLOBAL` or a workspace), or drop the override with None."""
    with wrap_unavailable():
        if rate is None:
            await client.hdel(keys.limits, field)
        else:
            await client.hset(keys.limits, field, rate)


async def deferrals(client: Redis, keys: PartitionKeys) -> dict[str, Deferral]:
    with wrap_unavailable():
        stored: Any = await client.hgetall(keys.deferrals)
    out = {}
    for workspace, value in stored.items():
        count, last, asked, limit = value.decode().split("|")
        out[workspace.decode()] = Deferral(int(count), int(last), int(asked), limit)
    return out
