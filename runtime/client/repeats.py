"""Repeatable jobs: add, list, read, pause, resume and remove schedules; the
scheduler publishes their ticks (runtime.scheduler.ticks).

Removing, replacing or pausing a schedule cancels its pending ticks by their tag.
Adding or resuming one publishes its first ticks at once, as a scheduler would at
its next read: a run due before any scheduler reads the schedule (none running
yet, or a run a second away) then still runs, late if need be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from sluice.runtime.client.jobs import Jobs
from sluice.runtime.client.publish import encode_input
from sluice.runtime.client.timing import HORIZON_MS, When, epoch_ms
from sluice.runtime.errors import InvalidSchedule
from sluice.runtime.registry import Registry
from sluice.runtime.scheduler.cron import Cron
from sluice.runtime.scheduler.ticks import last_run_ms, next_runs, tag_of, upcoming_ticks
from sluice.streams import envelope as env
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import PartitionKeys, check_token
from sluice.streams.publish import publish
from sluice.streams.repeats import (
    Schedule,
    delete_schedule,
    load_schedule,
    load_schedules,
    save_schedule,
    swap_schedule,
)

# The most runs a limit may ask for: a cron's last run is found by walking its
# runs when the schedule is added.
MAX_LIMIT = 10_000


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
        start: When | None = None,
        end: When | None = None,
        limit: int | None = None,
    ) -> Schedule:
        """Run `function` on `data` on a cron expression in `zone`, or every `every_ms`.

        Optional bounds: no run before `start` (an interval's runs then fall on
        start + k * every_ms, the first at start), none after `end`, at most
        `limit` runs (the first `limit` due times, those passed while paused
        included). `start` and `end` take `run_at`'s forms (runtime.client.timing).
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
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(
                f"schedule {name!r}: unknown time zone {zone!r}", "zone"
            ) from None
        if cron is not None:
            try:
                Cron(cron, zone).next_after(datetime.now(UTC))  # refuses a bad one now
            except InvalidSchedule as exc:
                raise InvalidSchedule(f"schedule {name!r}: {exc}", "cron") from None
        if every_ms is not None and not 1000 <= every_ms <= HORIZON_MS:
            raise InvalidSchedule(
                f"schedule {name!r}: every_ms must be at least 1000 and at most"
                f" {HORIZON_MS} (10 years)",
                "every_ms",
            )
        what = f"schedule {name!r}"
        start_ms = 0 if start is None else epoch_ms(start, what, "start")
        end_ms = 0 if end is None else epoch_ms(end, what, "end")
        if start_ms > env.now_ms() + HORIZON_MS:
            raise InvalidSchedule(f"{what}: start is more than 10 years ahead", "start")
        if start_ms and end_ms and end_ms <= start_ms:
            raise InvalidSchedule(f"{what}: end must be after start", "end")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
        ):
            raise InvalidSchedule(f"{what}: limit must be from 1 to {MAX_LIMIT} runs", "limit")
        schedule = Schedule(
            name=name,
            workspace=workspace,
            payload=encode_input(fn, data, workspace=workspace),
            cron=cron or "",
            zone=zone,
            every_ms=every_ms or 0,
            anchor_ms=env.now_ms(),
            start_ms=start_ms,
            end_ms=end_ms,
            limit=limit or 0,
        )
        if limit:
            schedule = msgspec.structs.replace(schedule, last_ms=last_run_ms(schedule))
        await self._cancel_pending(function, schedule)
        await save_schedule(self.redis, self._keys(function, workspace), schedule)
        await self._publish_first(function, schedule)
        return schedule

    async def read(self, function: str) -> list[Schedule]:
        found: list[Schedule] = []
        for keys in self.registry.partitions(function, cluster=is_cluster(self.redis)):
            found += await load_schedules(self.redis, keys)
        return sorted(found, key=lambda s: (s.workspace, s.name))

    @staticmethod
    def next_runs(schedule: Schedule, count: int, after_ms: int | None = None) -> list[int]:
        """The schedule's next `count` due times (epoch ms) after `after_ms` (default
        now), fewer near its end; those a paused schedule would have."""
        return next_runs(schedule, env.now_ms() if after_ms is None else after_ms, count)

    async def get(self, function: str, name: str, *, workspace: str) -> Schedule | None:
        return await load_schedule(self.redis, self._keys(function, workspace), workspace, name)

    async def pause(self, function: str, name: str, *, workspace: str) -> Schedule | None:
        """Stop making the schedule's ticks and cancel its pending ones; None if
        there is no such schedule. Pausing a paused one changes nothing."""
        return await self._set_paused(function, name, workspace, paused=True)

    async def resume(self, function: str, name: str, *, workspace: str) -> Schedule | None:
        """Make the schedule's ticks again, from its next due time after now."""
        return await self._set_paused(function, name, workspace, paused=False)

    async def _set_paused(
        self, function: str, name: str, workspace: str, *, paused: bool
    ) -> Schedule | None:
        keys = self._keys(function, workspace)
        while True:
            old = await load_schedule(self.redis, keys, workspace, name)
            if old is None or old.paused == paused:
                return old
            new = msgspec.structs.replace(
                old, paused=paused, resumed_ms=old.resumed_ms if paused else env.now_ms()
            )
            # Against a replacement written meanwhile: read again and retry.
            if await swap_schedule(self.redis, keys, old, new):
                break
        if paused:
            await self._cancel_pending(function, new)
        else:
            await self._publish_first(function, new)
        return new

    async def remove(self, function: str, name: str, *, workspace: str) -> bool:
        """Delete the schedule and cancel its pending tick; False if there was none."""
        keys = self._keys(function, workspace)
        for schedule in await load_schedules(self.redis, keys):
            if (schedule.name, schedule.workspace) == (name, workspace):
                await self._cancel_pending(function, schedule)
        return await delete_schedule(self.redis, keys, workspace, name)

    async def _publish_first(self, function: str, schedule: Schedule) -> None:
        """Publish the schedule's first ticks (two, fewer near its end), those a
        scheduler publishes too: the same ids, one job each."""
        ticks = upcoming_ticks(schedule, function, env.now_ms(), 0.0)
        keys = self._keys(function, schedule.workspace)
        await publish(self.redis, keys, ticks, self.registry.share(function))

    async def _cancel_pending(self, function: str, schedule: Schedule) -> None:
        jobs = Jobs(self.redis, self.registry)
        await jobs.cancel_tag(tag_of(schedule), workspace=schedule.workspace, functions=[function])

    def _keys(self, function: str, workspace: str) -> PartitionKeys:
        (keys,) = self.registry.partitions(function, workspace, cluster=is_cluster(self.redis))
        return keys
