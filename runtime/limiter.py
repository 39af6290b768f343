"""Applying a function's rate limits to what was read: run what fits, defer the rest.

One script call per read takes capacity for every workspace in the batch, the
call that lets the backlogs refill after the read (streams.consume.refill). Jobs
over the limit go back to the delayed set, each due at a slot the limits reserve
for it (the next free ones, up to a horizon), so they neither fail, nor get
dropped, nor come back to be deferred again: back in its slot, a job runs
without asking.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from runtime.declare import Batch, Function
from runtime.intake import Call, Intake
from runtime.outcome import deferred
from streams import envelope as env
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
    """Declared with a rate; a function without one is limited only while overrides
    exist (streams.ratelimit.overridden, checked by the loop)."""
    return fn.options.rate_per_s > 0 or fn.options.workspace_rate_per_s > 0


def holds_slot(envelope: env.Envelope, now_ms: int, grace_ms: int) -> bool:
    """A job back in the slot the limits reserved for it (limits.lua) starts without
    asking again, unless it comes back more than the burst after its slot (its
    scheduler was away, the worker busy): late jobs starting together beyond the
    burst would break the limit, so they ask again."""
    return envelope.slot_ms > 0 and now_ms <= envelope.slot_ms + grace_ms


async def apply_limits(
    client: Redis, keys: PartitionKeys, fn: Function[Any], intake: Intake, read: Read
) -> Intake:
    """`intake` with its calls cut to what the limits allow, the rest deferred; the
    last read's refill (`read`) is made in the same call. Jobs back in their
    reserved slot run without asking."""
    now_ms = env.now_ms()
    opts = fn.options
    grace_ms = int(opts.rate_burst_s * 1000)
    asked: dict[str, int] = {}
    for call in intake.calls:
        ws = call.batch.workspace
        asking = sum(1 for e in call.envelopes if not holds_slot(e, now_ms, grace_ms))
        if asking:
            asked[ws] = asked.get(ws, 0) + asking
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
        short = {ws: Grant(0) for ws in asked}
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
        run = msgspec.structs.replace(call, batch=Batch(ws, []), entry_ids=[], envelopes=[])
        for job, entry_id, envelope in zip(
            call.batch.jobs, call.entry_ids, call.envelopes, strict=True
        ):
            held = holds_slot(envelope, now_ms, grace_ms)
            if held or left[ws] > 0:
                if not held:
                    left[ws] -= 1
                run.batch.jobs.append(job)
                run.entry_ids.append(entry_id)
                run.envelopes.append(envelope)
                continue
            i = denied[ws]
            denied[ws] += 1
            if i < len(grant.due_ms):
                due = grant.due_ms[i]
                settlements.append(
                    deferred(entry_id, envelope, due_ms=due, slot=i < grant.reserved)
                )
            else:
                settlements.append(deferred(entry_id, envelope, delay_ms=UNCHECKED_DELAY_MS))
        if run.entry_ids:
            calls.append(run)
    return Intake(calls, settlements, intake.taken)
