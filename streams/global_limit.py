"""The global rate limit of a function with several partitions: one limiter for all
of them, in a key of its own (keys.global_limit), asked in a round trip of its own
after the partition's refill took the workspaces' own limits (limits.lua).

A share of the rate per partition, as each partition's refill would keep it, holds a
busy workspace (whose jobs all live in one partition) to a fraction of the limit: 4
partitions ran one workspace at 4.9/s of 20/s. Asked after the workspaces' limits,
the global limiter books only jobs those let start. The extra round trip is paid by
limited functions with several partitions only; a one-partition function's refill
keeps taking both limits in its one call.
"""

from __future__ import annotations

from typing import Any

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys, global_limit
from sluice.streams.lua import Script, packed
from sluice.streams.ratelimit import HISTORY, RESERVE_AHEAD_MS, Ask, Grant, check_rate

_TAKE = Script.beside(__file__, "global_limit.lua")
_NOTE = Script.beside(__file__, "global_held.lua", uses=["limits"])


async def take_global(
    client: Redis, keys: PartitionKeys, ask: Ask, short: dict[str, Grant]
) -> dict[str, Grant]:
    """What `ask`'s jobs got from the function's global limit, given `short`: what the
    partition's refill gave the workspaces that its own limits held back (the others
    got all). The jobs those let start now, or reserved a slot for, ask the global
    limiter in that order; the workspaces' deferred ones stay deferred. Returns the
    workspaces that got less than they asked, as `sluice.streams.consume.refill` does."""
    earliest: list[int] = []
    for workspace, n in ask.jobs.items():
        grant = short.get(workspace)
        if grant is None:
            earliest += [0] * n
        else:
            reserved = grant.due_ms[: grant.reserved]
            earliest += [0] * grant.granted + [max(0, d - grant.now_ms) for d in reserved]
    if not earliest:
        return short
    reply: Any = await _TAKE(
        client,
        [global_limit(keys.function)],
        [ask.rates.global_rate, ask.rates.burst_s, RESERVE_AHEAD_MS, packed(earliest)],
    )
    if not reply:
        return short  # no global rate in force
    now_ms, rate, slots = reply[0], float(reply[1]), reply[2:]
    out: dict[str, Grant] = {}
    held: dict[str, int] = {}
    at = 0
    for workspace, n in ask.jobs.items():
        before = short.get(workspace)
        passed = n if before is None else before.granted + before.reserved
        mine, at = slots[at : at + passed], at + passed
        free = n if before is None else before.granted
        granted = sum(1 for s in mine if s == 0)
        later = [now_ms + s for s in mine if s > 0]
        past = [now_ms - 1 - s for s in mine if s < 0]
        if before is None and granted == n:
            continue
        # The workspace's own deferred jobs: due when its limit said, on this clock.
        rest = [] if before is None else before.due_ms[before.reserved :]
        if before is not None:
            rest = [now_ms + d - before.now_ms for d in rest]
        hit = granted < free or bool(past)
        out[workspace] = Grant(
            granted,
            len(later),
            later + past + rest,
            now_ms,
            hit or (before is not None and before.global_hit),
        )
        if granted < free:
            held[workspace] = free - granted
    if held:
        await _note(client, keys, ask, short, held, rate)
    return out


async def _note(
    client: Redis,
    keys: PartitionKeys,
    ask: Ask,
    short: dict[str, Grant],
    held: dict[str, int],
    rate: float,
) -> None:
    """Record in the partition the jobs the global limit held back, as the refill
    records those the workspaces' limits held back (deferrals, deferlog): a third
    round trip, only while the global limit holds jobs back, when reads slow to it."""
    names = [*held]
    asked = [ask.jobs[w] for w in names]
    # A workspace the refill held jobs of has this read's asked jobs logged already.
    logged = [0 if w in short else ask.jobs[w] for w in names]
    await _NOTE(
        client,
        [keys.deferrals, keys.deferlog],
        [rate, HISTORY, packed(names), packed(asked), packed([*held.values()]), packed(logged)],
    )


async def set_global_limit(client: Redis, function: str, rate: float | None) -> None:
    """Override the global rate of a function with several partitions, or drop the
    override with None."""
    if rate is not None:
        check_rate(rate)
    with wrap_unavailable():
        if rate is None:
            await client.hdel(global_limit(function), "rate")
        else:
            await client.hset(global_limit(function), "rate", rate)
