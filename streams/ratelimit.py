"""Rate limits of a partition: what taking capacity (limits.lua, GCRA, called by
consume.refill after each read) is asked and answers, overrides, deferrals."""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.errors import ConfigurationError, wrap_unavailable
from sluice.streams.keys import PartitionKeys, global_limit
from sluice.streams.lua import Arg, packed

# The rates a limit may have, jobs/s: from one a day to a million. limits.lua keeps
# times as integer microseconds, which a rate near zero would push past any
# number it can hold, and a rate of NaN or infinity would poison.
MIN_RATE_PER_S = 1 / 86_400
MAX_RATE_PER_S = 1_000_000.0


def check_rate(rate_per_s: float) -> float:
    """Return `rate_per_s` if a limit may have it, else raise `ConfigurationError`."""
    if not MIN_RATE_PER_S <= rate_per_s <= MAX_RATE_PER_S:
        raise ConfigurationError(
            f"a rate limit must be from {MIN_RATE_PER_S:.3g} (one a day) to "
            f"{MAX_RATE_PER_S:g} jobs/s, got {rate_per_s!r}"
        )
    return rate_per_s


# The override field of the function's global rate in a one-partition function's
# `limits` (with several, it is keys.global_limit's `rate`); a workspace's own
# override is its name ('*' is never one: keys.check_token).
GLOBAL = "*"


# Slots are reserved for jobs not granted at most this far ahead (limits.lua) when
# the global limit holds them back: a worker holds them until their slot, no more
# than its capacity, so its reads slow to the limit and a campaign far over it is
# deferred no job at all. A minute also bounds how long a lost worker's reserved
# jobs wait for their slot before they are taken over.
RESERVE_AHEAD_MS = 60_000
# ... and when a workspace's own limit does: held jobs of one workspace must not
# fill a worker that other workspaces' jobs need.
WORKSPACE_AHEAD_MS = 2_000
# Seconds with deferrals a workspace's history (`deferlog`) keeps, the newest: what
# the BullMQ service's rate-limit `details` showed, bounded so a tenant over its
# limit all day costs a few hundred bytes.
HISTORY = 20


class Grant(msgspec.Struct, frozen=True):
    """What a workspace's jobs got from the limits."""

    granted: int
    # Of the jobs not granted, how many (the first ones) hold a reserved slot.
    reserved: int = 0
    # Redis time (ms) each job not granted is due: its reserved slot, or when its
    # slot comes within the horizon, to ask again. Empty: the limits were not
    # read at all.
    due_ms: list[int] = []
    # Redis's time (ms) when the limits were taken, to make `due_ms` waits.
    now_ms: int = 0
    # The function's global limit held these jobs back, not the workspace's own.
    global_hit: bool = False


class Deferral(msgspec.Struct, frozen=True):
    """A workspace's record of jobs deferred for the rate limits."""

    count: int
    last_ms: int
    # Jobs the workspace asked for in the call that last deferred some.
    asked: int
    # Which limit it hit: "global" or "workspace".
    limit: str


class DeferralEvent(msgspec.Struct, frozen=True):
    """One second in which the limits held back some of a workspace's jobs."""

    # Redis time (ms) of the second's first deferral.
    at_ms: int
    # Jobs the workspace's reads asked for in that second, and of them, those not
    # granted at once (held for a reserved slot, or delayed).
    asked: int
    held: int
    # The limit last hit that second, "global" or "workspace", and its rate (jobs/s).
    limit: str
    rate_per_s: float


class Rates(msgspec.Struct, frozen=True):
    """A function's declared limits; overrides in Redis win over them."""

    # The function's global rate, jobs/s (0: none).
    global_rate: float
    # Each workspace's rate, jobs/s (0: none).
    workspace_rate: float
    # Tolerance, in seconds of rate.
    burst_s: float
    # The function has several partitions: its global limiter is its own key's
    # (streams.global_limit), asked after the partition's refill took only the
    # workspaces' limits, so the limit holds whichever partitions the load is in.
    shared: bool = False


class Ask(msgspec.Struct, frozen=True):
    """Rate capacity asked for: jobs about to start per workspace, under `rates`."""

    jobs: dict[str, int]
    rates: Rates

    def args(self) -> list[Arg]:
        """The arguments of limits.lua's Limits.take."""
        here = not self.rates.shared
        return [
            self.rates.global_rate if here else 0,
            self.rates.workspace_rate,
            self.rates.burst_s,
            RESERVE_AHEAD_MS,
            WORKSPACE_AHEAD_MS,
            packed([*self.jobs, GLOBAL] if here else [*self.jobs]),
            packed([*self.jobs.values()]),
            HISTORY,
        ]

    def grants(self, reply: list[Any]) -> dict[str, Grant]:
        """Limits.take's reply: the workspaces that got less than they asked for."""
        if not reply:
            return {}
        workspaces = list(self.jobs)
        now_ms = reply[0]
        return {
            workspaces[reply[i] - 1]: Grant(
                reply[i + 1], reply[i + 2], list(reply[i + 3]), now_ms, reply[i + 4] == 1
            )
            for i in range(1, len(reply), 5)
        }


async def set_limit(client: Redis, keys: PartitionKeys, field: str, rate: float | None) -> None:
    """Override a rate (`GLOBAL` or a workspace), or drop the override with None."""
    if rate is not None:
        check_rate(rate)
    with wrap_unavailable():
        if rate is None:
            await client.hdel(keys.limits, field)
        else:
            await client.hset(keys.limits, field, rate)


async def overridden(client: Redis, keys: PartitionKeys) -> bool:
    """Whether any override exists, in the partition or of the function's global rate
    (streams.global_limit): a function declared without a rate is limited only then."""
    with wrap_unavailable():
        if await client.exists(keys.limits):
            return True
        return bool(await client.hexists(global_limit(keys.function), "rate"))


async def deferrals(client: Redis, keys: PartitionKeys) -> dict[str, Deferral]:
    with wrap_unavailable():
        stored: Any = await client.hgetall(keys.deferrals)
    out = {}
    for workspace, value in stored.items():
        count, last, asked, limit = value.decode().split("|")
        out[workspace.decode()] = Deferral(int(count), int(last), int(asked), limit)
    return out


async def deferral_history(
    client: Redis, keys: PartitionKeys, workspace: str
) -> list[DeferralEvent]:
    """The workspace's recent seconds with deferrals in the partition, newest first."""
    with wrap_unavailable():
        stored: Any = await client.hget(keys.deferlog, workspace)
    if not stored:
        return []
    events = []
    for entry in stored.decode().split(";"):
        at, asked, held, limit, rate = entry.split("|")
        events.append(DeferralEvent(int(at), int(asked), int(held), limit, float(rate)))
    return events


async def forget_deferrals(client: Redis, keys: PartitionKeys, workspace: str | None) -> None:
    """Drop one workspace's record and history of deferrals, or (None) every one's.
    The limiter's state stays: forgetting must not grant a burst over the limit."""
    with wrap_unavailable():
        if workspace is None:
            await client.delete(keys.deferrals, keys.deferlog)
            return
        async with client.pipeline(transaction=True) as both:
            both.hdel(keys.deferrals, workspace)
            both.hdel(keys.deferlog, workspace)
            await both.execute()
