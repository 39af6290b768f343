"""Applying a function's rate limits to what was read: run what fits, hold or defer
the rest.

One script call per read takes capacity for every workspace in the batch, the
call that lets the backlogs refill after the read (streams.consume.refill); for a
function with several partitions, whose global limiter is one for all of them
(streams.global_limit), a second call then takes the global capacity. A
job over the limit whose next free slot is within the horizon (RESERVE_AHEAD_MS)
gets that slot reserved and stays held by this worker until it comes: sent back
to the stream, it would queue behind every unread entry and miss it. One whose
slot lies beyond goes to the delayed set until its slot enters the horizon, and
the reader pauses as long, rather than read jobs only to defer them: a campaign
far over its limit costs one deferral a job at most, not a spin of reads.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from sluice.runtime.declare import Function
from sluice.runtime.worker.intake import Ready
from sluice.runtime.worker.outcome import deferred
from sluice.streams.connection import Redis
from sluice.streams.consume import Read, refill
from sluice.streams.errors import RedisUnavailable
from sluice.streams.global_limit import take_global
from sluice.streams.keys import PartitionKeys
from sluice.streams.ratelimit import Ask, Grant, Rates
from sluice.streams.settle import Outcome

log = logging.getLogger(__name__)

# When the limits cannot be read (Redis away, say), jobs wait this long rather than
# run unchecked: the limits protect a provider that would refuse them.
UNCHECKED_DELAY_MS = 1000


class Limited(msgspec.Struct):
    """What the limits let a read do."""

    # Jobs to run now.
    run: list[Ready]
    # Jobs holding a reserved slot: (ms from now, the job).
    later: list[tuple[int, Ready]]
    # Jobs deferred to the delayed set.
    deferred: list[Outcome]
    # How long the reader should wait: the function's global limit is booked
    # beyond the horizon for this long.
    pause_ms: int


def limited(fn: Function[Any]) -> bool:
    """Declared with a rate; a function without one is limited only while overrides
    exist (streams.ratelimit.overridden, watched by runtime.worker.reader)."""
    return fn.options.rate_per_s > 0 or fn.options.workspace_rate_per_s > 0


async def apply_limits(
    client: Redis, keys: PartitionKeys, fn: Function[Any], ready: list[Ready], read: Read
) -> Limited:
    """`ready` sorted by what the limits allow; the last read's refill (`read`) is
    made in the same call."""
    asked: dict[str, int] = {}
    for r in ready:
        ws = r.job.workspace
        asked[ws] = asked.get(ws, 0) + 1
    opts = fn.options
    shared = opts.partitions > 1
    ask = Ask(asked, Rates(opts.rate_per_s, opts.workspace_rate_per_s, opts.rate_burst_s, shared))
    try:
        short = await refill(client, keys, read.taken, read.drained, opts.share, ask)
        if shared and asked:
            short = await take_global(client, keys, ask, short)
    except Exception as exc:
        # Whatever went wrong (Redis away, out of memory), the jobs must not sit
        # held and forgotten: they are deferred, to be checked again. The counts
        # the refill did not lower are healed by a later read that finds the
        # stream drained.
        level = logging.WARNING if isinstance(exc, RedisUnavailable) else logging.ERROR
        log.log(level, "%s: rate limits unreadable (%s); deferring %d jobs", keys, exc, len(ready))
        short = {ws: Grant(0) for ws in asked}
    if not short:
        return Limited(ready, [], [], 0)  # everything fits: the common case
    return _cut(ready, short)


def _cut(ready: list[Ready], short: dict[str, Grant]) -> Limited:
    """Within each workspace short of capacity, the first jobs run on what was
    granted, the next hold the slots reserved for them, and the rest are deferred
    until their slots (or, with no slot given, for a while)."""
    run: list[Ready] = []
    later: list[tuple[int, Ready]] = []
    deferred_: list[Outcome] = []
    left = {ws: g.granted for ws, g in short.items()}
    denied = dict.fromkeys(short, 0)
    for r in ready:
        ws = r.job.workspace
        grant = short.get(ws)
        if grant is None or left[ws] > 0:
            if grant is not None:
                left[ws] -= 1
            run.append(r)
            continue
        i = denied[ws]
        denied[ws] += 1
        if i < grant.reserved:
            later.append((max(0, grant.due_ms[i] - grant.now_ms), r))
        elif i < len(grant.due_ms):
            deferred_.append(deferred(r.entry_id, r.envelope, due_ms=grant.due_ms[i]))
        else:
            deferred_.append(deferred(r.entry_id, r.envelope, delay_ms=UNCHECKED_DELAY_MS))
    pause_ms = max(
        (
            _room_for(grant, len(ready))
            for grant in short.values()
            if grant.global_hit and len(grant.due_ms) > grant.reserved
        ),
        default=0,
    )
    return Limited(run, later, deferred_, pause_ms)


def _room_for(grant: Grant, read: int) -> int:
    """Milliseconds until the global limit's horizon has room for a read as large
    as this one: the jobs past it are due when their slots enter it, one interval
    apart, so the room for `read` comes `read` intervals after the first."""
    unreserved = grant.due_ms[grant.reserved :]
    first = unreserved[0]
    step = (unreserved[-1] - first) / (len(unreserved) - 1) if len(unreserved) > 1 else 0
    return max(0, round(first + step * (read - 1)) - grant.now_ms)
