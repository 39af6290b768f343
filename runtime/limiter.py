"""Applying a function's rate limits to what was read: run what fits, defer the rest.

One script call per read takes capacity for every workspace in the batch, the
call that lets the backlogs refill after the read (streams.consume.refill). Jobs
over the limit go back to the delayed set, each due when its own slot comes
(the next free one, then one interval apart), so they neither fail, nor get
dropped, nor come back to be deferred again at once.
"""

from __future__ import annotations

import logging
from typing import Any

from runtime.declare import Batch, Function
from runtime.intake import Call, Intake
from runtime.outcome import deferred
from streams.connection import Redis
from streams.consume import Read, refill
from streams.errors import RedisUnavailable
from streams.keys import PartitionKeys
from streams.ratelimit import Ask, Grant, Rates

log = logging.getLogger(__name__)

# When the limits cannot be read (Redis away, say), jobs wait this long rather than
# run unchecked: the limits protect a provider that would refuse them.
UNCHECKED_DELAY_MS = 1000


def limited(fn: Function[Any]) -> bool:
    return fn.options.rate_per_s > 0 or fn.options.workspace_rate_per_s > 0


async def apply_limits(
    client: Redis, keys: PartitionKeys, fn: Function[Any], intake: Intake, read: Read
) -> Intake:
    """`intake` with its calls cut to what the limits allow, the rest deferred; the
    last read's refill (`read`) is made in the same call."""
    asked: dict[str, int] = {}
    for call in intake.calls:
        ws = call.batch.workspace
        asked[ws] = asked.get(ws, 0) + len(call.entry_ids)
    opts = fn.options
    rates = Rates(opts.rate_per_s / opts.partitions, opts.workspace_rate_per_s, opts.rate_burst_s)
    try:
        short = await refill(client, keys, read.taken, read.drained, opts.share, Ask(asked, rates))
    except Exception as exc:
        # Whatever went wrong (Redis away, out of memory), the jobs must not sit
        # held and forgotten: they are deferred, to be checked again. The counts
        # the refill did not lower are healed by a later read that finds the
        # stream drained.
        level = logging.WARNING if isinstance(exc, RedisUnavailable) else logging.ERROR
        log.log(
            level,
            "%s: rate limits unreadable (%s); deferring %d jobs",
            keys,
            exc,
            sum(asked.values()),
        )
        short = {ws: Grant(0, UNCHECKED_DELAY_MS, 0) for ws in asked}
    if not short:
        return intake  # everything fits: the common case
    calls: list[Call] = []
    settlements = list(intake.settlements)
    left = {ws: g.granted for ws, g in short.items()}
    denied = dict.fromkeys(short, 0)
    for call in intake.calls:
        ws = call.batch.workspace
        grant = short.get(ws)
        if grant is None:
            calls.append(call)
            continue
        run = min(left[ws], len(call.batch))
        left[ws] -= run
        if run:
            jobs = call.batch.jobs[:run]
            calls.append(Call(Batch(ws, jobs), call.entry_ids[:run], call.envelopes[:run]))
        for entry_id, envelope in zip(call.entry_ids[run:], call.envelopes[run:], strict=True):
            delay = grant.wait_ms + denied[ws] * grant.interval_ms
            settlements.append(deferred(entry_id, envelope, delay))
            denied[ws] += 1
    return Intake(calls, settlements, intake.taken)
