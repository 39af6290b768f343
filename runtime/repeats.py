"""Repeatable jobs: add, list and remove schedules; turn a schedule into its next tick.

Each tick is published as a delayed job with the id
`rpt:<workspace>:<name>:<schedule version>:<tick ms>`: any number of schedulers may publish
the same tick, and the publish script's id check keeps it one job; a replaced
schedule has a new version, so its ticks are new jobs. Ticks carry the tag
`repeat:<name>`, so removing a schedule cancels its pending tick. A tick missed
while every scheduler was down runs late, once; ticks further back are not made up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runtime.client import encode_input
from runtime.cron import Cron
from runtime.errors import InvalidSchedule
from runtime.jobs import Jobs
from runtime.registry import Registry
from runtime.timing import HORIZON_MS
from streams import envelope as env
from streams.connection import Redis
from streams.keys import PartitionKeys, check_token
from streams.publish import Outgoing
from streams.repeats import Schedule, delete_schedule, load_schedules, save_schedule


class Repeats:
    """The repeatable jobs of the functions in `registry`."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def add(
        self,
        function: str,
        name: str,
        *,
        workspace: str,
        data: Any,
        cron: str | None = None,
        zone: str = "UTC",
        every_ms: int | None = None,
    ) -> Schedule:
        """Run `function` on `data` on a cron expression in `zone`, or every `every_ms`.

        Names are per workspace. Adding a name again replaces its schedule; its
        pending ticks are cancelled.
        """
        (fn,) = self.registry.select([function])
        check_token("schedule name", name)
        if len(name) > 64:
            raise InvalidSchedule(f"schedule name {name!r} is longer than 64 characters")
        check_token("workspace", workspace)
        if (cron is None) == (every_ms is None):
            raise InvalidSchedule(f"schedule {name!r}: give cron or every_ms, one of them")
        if cron is not None:
            Cron(cron, zone).next_after(datetime.now(UTC))  # refuses a bad one now
        if every_ms is not None and not 1000 <= every_ms <= HORIZON_MS:
            raise InvalidSchedule(
                f"schedule {name!r}: every_ms must be at least 1000 and at most"
                f" {HORIZON_MS} (10 years)",
                "every_ms",
            )
        schedule = Schedule(
            name=name,
            workspace=workspace,
            payload=encode_input(fn, data),
            cron=cron or "",
            zone=zone,
            every_ms=every_ms or 0,
            anchor_ms=env.now_ms(),
        )
        await self._cancel_pending(function, schedule)
        await save_schedule(self.redis, self._keys(function, workspace), schedule)
        return schedule

    async def read(self, function: str) -> list[Schedule]:
        found: list[Schedule] = []
        for keys in self.registry.partitions(function):
            found += await load_schedules(self.redis, keys)
        return sorted(found, key=lambda s: s.name)

    async def remove(self, function: str, name: str, *, workspace: str) -> bool:
        """Delete the schedule and cancel its pending tick; False if there was none."""
        keys = self._keys(function, workspace)
        for schedule in await load_schedules(self.redis, keys):
            if (schedule.name, schedule.workspace) == (name, workspace):
                await self._cancel_pending(function, schedule)
        return await delete_schedule(self.redis, keys, workspace, name)

    async def _cancel_pending(self, function: str, schedule: Schedule) -> None:
        jobs = Jobs(self.redis, self.registry)
        await jobs.cancel_tag(tag_of(schedule), workspace=schedule.workspace, functions=[function])

    def _keys(self, function: str, workspace: str) -> PartitionKeys:
        (keys,) = self.registry.partitions(function, workspace)
        return keys


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
