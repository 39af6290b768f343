"""A repeatable job's schedule turned into its due times and the ticks to publish.

Each tick is published as a delayed job with the id
`rpt:<workspace>:<name>:<schedule version>:<tick ms>`: any number of schedulers may publish
the same tick, and the publish script's id check keeps it one job; a replaced
(or resumed) schedule has a new version, so its ticks are new jobs. Ticks carry the tag
`repeat:<name>`, so removing or pausing a schedule cancels its pending ticks. A tick
missed while every scheduler was down runs late, once; ticks further back are not made up.

A scheduler publishes, at each read of the schedules, the ticks due since its
previous read too: a schedule made (or resumed) between two reads may fall due
before the second (every_ms=1000 with limit=1 does, a second after it is made),
and its tick then runs late rather than never. Those already published are
one job each all the same (their ids).

A schedule's runs are its due times after its start (or after it was added), up to
its end and its limit: the limit counts due times, so the first `limit` of them are
the runs (those passed while paused count too), whatever ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice

from sluice.runtime.errors import InvalidSchedule
from sluice.runtime.scheduler.cron import Cron
from sluice.streams import envelope as env
from sluice.streams.publish import Outgoing
from sluice.streams.repeats import Schedule


def tag_of(schedule: Schedule) -> str:
    return f"repeat:{schedule.name}"


# Ticks published ahead at most, whatever the interval.
MAX_AHEAD = 100


def upcoming_ticks(
    schedule: Schedule, function: str, now_ms: int, recheck_s: float, since_ms: int | None = None
) -> list[Outgoing]:
    """The ticks to have in place now: those due after `since_ms` (the previous
    read; default now), every one due before the next re-check and one more (at
    least two), so no run is missed between two re-reads. None while paused or
    after the last run; none due before the schedule was resumed."""
    if schedule.paused:
        return []
    after = now_ms if since_ms is None else min(now_ms, max(since_ms, schedule.resumed_ms))
    horizon = now_ms + round(recheck_s * 1000)
    due: list[int] = []
    for at in runs_after(schedule, after):
        due.append(at)
        if len(due) >= MAX_AHEAD or (at > horizon and len(due) >= 2):
            break
    return [_tick(schedule, function, at, now_ms) for at in due]


def next_runs(schedule: Schedule, after_ms: int, count: int) -> list[int]:
    """The schedule's next `count` due times (epoch ms) after `after_ms`, fewer near its end."""
    return list(islice(runs_after(schedule, after_ms), count))


def runs_after(schedule: Schedule, after_ms: int) -> Iterator[int]:
    """The due times strictly after `after_ms`, within the schedule's start, end and limit."""
    stop = min(b for b in (schedule.end_ms, schedule.last_ms, 2**62) if b)
    for at in _unbounded(schedule, max(after_ms, _floor(schedule))):
        if at > stop:
            return
        yield at


def last_run_ms(schedule: Schedule) -> int:
    """The due time of the `limit`-th run, counted from the schedule's first."""
    if schedule.every_ms:
        first = _unbounded(schedule, _floor(schedule))
        return next(first) + (schedule.limit - 1) * schedule.every_ms
    runs = list(islice(_unbounded(schedule, _floor(schedule)), schedule.limit))
    if len(runs) < schedule.limit:
        raise InvalidSchedule(
            f"schedule {schedule.name!r}: cron {schedule.cron!r} does not run"
            f" {schedule.limit} times within 5 years; give an end instead",
            "limit",
        )
    return runs[-1]


def _floor(schedule: Schedule) -> int:
    # Runs fall after this: from the start on, else after the schedule was added.
    return schedule.start_ms - 1 if schedule.start_ms else schedule.anchor_ms


def _unbounded(schedule: Schedule, after_ms: int) -> Iterator[int]:
    if schedule.cron:
        after = datetime.fromtimestamp(after_ms / 1000, UTC)
        for run in Cron(schedule.cron, schedule.zone).runs_after(after):
            yield round(run.timestamp() * 1000)
        return
    # Interval ticks fall on origin + k * every_ms.
    origin = schedule.start_ms or schedule.anchor_ms
    at = origin + max(0, (after_ms - origin) // schedule.every_ms + 1) * schedule.every_ms
    while True:
        yield at
        at += schedule.every_ms


def _tick(schedule: Schedule, function: str, tick_ms: int, now_ms: int) -> Outgoing:
    """The tick due at `tick_ms`, as the delayed job to publish."""
    version = str(schedule.anchor_ms)
    if schedule.resumed_ms:
        version += f".{schedule.resumed_ms}"
    envelope = env.Envelope(
        id=f"rpt:{schedule.workspace}:{schedule.name}:{version}:{tick_ms}",
        function=function,
        workspace=schedule.workspace,
        payload=schedule.payload,
        created_ms=now_ms,
        due_ms=tick_ms,
        tags=(tag_of(schedule),),
    )
    return Outgoing(envelope, due_ms=tick_ms)
