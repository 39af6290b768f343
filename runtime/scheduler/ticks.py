"""A repeatable job's schedule turned into the ticks to publish.

Each tick is published as a delayed job with the id
`rpt:<workspace>:<name>:<schedule version>:<tick ms>`: any number of schedulers may publish
the same tick, and the publish script's id check keeps it one job; a replaced
schedule has a new version, so its ticks are new jobs. Ticks carry the tag
`repeat:<name>`, so removing a schedule cancels its pending tick. A tick missed
while every scheduler was down runs late, once; ticks further back are not made up.
"""

from __future__ import annotations

from datetime import UTC, datetime

from runtime.scheduler.cron import Cron
from streams import envelope as env
from streams.publish import Outgoing
from streams.repeats import Schedule


def tag_of(schedule: Schedule) -> str:
    return f"repeat:{schedule.name}"


# Ticks published ahead at most, whatever the interval.
MAX_AHEAD = 100


def upcoming_ticks(
    schedule: Schedule, function: str, now_ms: int, recheck_s: float
) -> list[Outgoing]:
    """The ticks to have in place now: every one due before the next re-check and
    one more (at least two), so no run is missed between two re-reads."""
    ticks = [next_tick(schedule, function, now_ms)]
    horizon = now_ms + round(recheck_s * 1000)
    while ticks[-1].due_ms <= horizon and len(ticks) < MAX_AHEAD:
        ticks.append(next_tick(schedule, function, ticks[-1].due_ms))
    if len(ticks) == 1:
        ticks.append(next_tick(schedule, function, ticks[0].due_ms))
    return ticks


def next_tick(schedule: Schedule, function: str, after_ms: int) -> Outgoing:
    """The schedule's first tick after `after_ms`, as the delayed job to publish."""
    if schedule.cron:
        after = datetime.fromtimestamp(after_ms / 1000, UTC)
        tick_ms = round(Cron(schedule.cron, schedule.zone).next_after(after).timestamp() * 1000)
    else:
        periods = max(0, (after_ms - schedule.anchor_ms) // schedule.every_ms + 1)
        tick_ms = schedule.anchor_ms + periods * schedule.every_ms
    envelope = env.Envelope(
        id=f"rpt:{schedule.workspace}:{schedule.name}:{schedule.anchor_ms}:{tick_ms}",
        function=function,
        workspace=schedule.workspace,
        payload=schedule.payload,
        created_ms=after_ms,
        due_ms=tick_ms,
        tags=(tag_of(schedule),),
    )
    return Outgoing(envelope, due_ms=tick_ms)
