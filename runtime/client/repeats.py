"""Repeatable jobs: add, list and remove schedules; the scheduler publishes their
ticks (runtime.scheduler.ticks).

Removing or replacing a schedule cancels its pending ticks by their tag.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runtime.client.jobs import Jobs
from runtime.client.publish import encode_input
from runtime.client.timing import HORIZON_MS
from runtime.errors import InvalidSchedule
from runtime.registry import Registry
from runtime.scheduler.cron import Cron
from runtime.scheduler.ticks import tag_of
from streams import envelope as env
from streams.connection import Redis
from streams.keys import PartitionKeys, check_token
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
