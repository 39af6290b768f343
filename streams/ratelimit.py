"""Rate limits of a partition: what taking capacity (limits.lua, GCRA, called by
consume.refill after each read) is asked and answers, overrides, deferrals."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.connection import Redis
from streams.errors import wrap_unavailable
from streams.keys import PartitionKeys
from streams.lua import Arg, packed

# The override field of the partition's share of the function's global rate; a
# workspace's own override is its name ('*' is never one: keys.check_token).
GLOBAL = "*"


# Slots are reserved for jobs not granted at most this far ahead (limits.lua), so
# one workspace's flood books the global rate no further ahead of the others.
RESERVE_AHEAD_MS = 2000


class Grant(msgspec.Struct, frozen=True):
    """What a workspace's jobs got from the limits."""

    granted: int
    # Of the jobs not granted, how many (the first ones) hold a reserved slot.
    reserved: int = 0
    # Redis time (ms) each job not granted is due back: its reserved slot, or
    # when its slot comes within RESERVE_AHEAD_MS, to ask again. Empty: the
    # limits were not read at all.
    due_ms: list[int] = []


class Deferral(msgspec.Struct, frozen=True):
    """A workspace's record of jobs deferred for the rate limits."""

    count: int
    last_ms: int
    # Jobs the workspace asked for in the call that last deferred some.
    asked: int
    # Which limit it hit: "global" or "workspace".
    limit: str


class Rates(msgspec.Struct, frozen=True):
    """A function partition's declared limits; overrides in Redis win over them."""

    # This partition's share of the function's global rate, jobs/s (0: none).
    global_rate: float
    # Each workspace's rate, jobs/s (0: none).
    workspace_rate: float
    # Tolerance, in seconds of rate.
    burst_s: float


class Ask(msgspec.Struct, frozen=True):
    """Rate capacity asked for: jobs about to start per workspace, under `rates`."""

    jobs: dict[str, int]
    rates: Rates

    def args(self) -> list[Arg]:
        """The arguments of limits.lua's Limits.take."""
        return [
            self.rates.global_rate,
            self.rates.workspace_rate,
            self.rates.burst_s,
            RESERVE_AHEAD_MS,
            packed([*self.jobs, GLOBAL]),
            packed([*self.jobs.values()]),
        ]

    def grants(self, reply: list[Any]) -> dict[str, Grant]:
        """Limits.take's reply: the workspaces that got less than they asked for."""
        workspaces = list(self.jobs)
        return {
            workspaces[reply[i] - 1]: Grant(reply[i + 1], reply[i + 2], list(reply[i + 3]))
            for i in range(0, len(reply), 4)
        }


async def set_limit(client: Redis, keys: PartitionKeys, field: str, rate: float | None) -> None:
    """Override a rate (`GLOBAL` or a workspace), or drop the override with None."""
    with wrap_unavailable():
        if rate is None:
            await client.hdel(keys.limits, field)
        else:
            await client.hset(keys.limits, field, rate)


async def overridden(client: Redis, keys: PartitionKeys) -> bool:
    """Whether any override exists: a function declared without a rate is limited
    only then."""
    with wrap_unavailable():
        return bool(await client.exists(keys.limits))


async def deferrals(client: Redis, keys: PartitionKeys) -> dict[str, Deferral]:
    with wrap_unavailable():
        stored: Any = await client.hgetall(keys.deferrals)
    out = {}
    for workspace, value in stored.items():
        count, last, asked, limit = value.decode().split("|")
        out[workspace.decode()] = Deferral(int(count), int(last), int(asked), limit)
    return out
