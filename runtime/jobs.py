"""Jobs by id: look one up, cancel it, move its due time; counts per function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from runtime.errors import JobNotFound, WrongJobState
from runtime.registry import Registry
from runtime.timing import due
from streams import cancel as scripts
from streams.connection import Redis
from streams.jobs import Counts, JobRecord, counts, get_job
from streams.keys import PartitionKeys, check_token, partition_of


class Jobs:
    """Operate on single jobs of the functions in `registry`.

    A job lives in one partition of its function: the one its workspace maps to.
    Pass `workspace` when known; otherwise each partition is asked in turn.
    """

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def get(
        self, function: str, job_id: str, *, workspace: str | None = None
    ) -> JobRecord | None:
        for keys in self._partitions(function, workspace):
            record = await get_job(self.redis, keys, check_token("job id", job_id))
            if record is not None:
                return record
        return None

    async def cancel(self, function: str, job_id: str, *, workspace: str | None = None) -> None:
        """Cancel a job that has not started: a delayed one, or a queued one no worker
        has read. Cancelling a cancelled job does nothing, so callers may retry.
        Raises `WrongJobState` for a running or finished job."""
        await self._change(
            function,
            job_id,
            workspace,
            lambda keys: scripts.cancel(self.redis, keys, job_id),
            done="cancelled",
            action="cancelled",
        )

    async def reschedule(
        self,
        function: str,
        job_id: str,
        *,
        delay_ms: int | None = None,
        run_at: datetime | str | None = None,
        workspace: str | None = None,
    ) -> None:
        """Move a delayed job's due time (neither given: due now, promoted on the
        schedulers' wake-up). Raises `WrongJobState` for any other job."""
        due_ms, delay = due(delay_ms, run_at, f"job {job_id}")

        async def move(keys: PartitionKeys) -> str:
            return await scripts.reschedule(self.redis, keys, job_id, due_ms=due_ms, delay_ms=delay)

        await self._change(function, job_id, workspace, move, done="delayed", action="rescheduled")

    async def counts(self, function: str) -> Counts:
        """The function's counts, summed over its partitions."""
        parts = [await counts(self.redis, keys) for keys in self._partitions(function, None)]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    async def _change(
        self,
        function: str,
        job_id: str,
        workspace: str | None,
        script: Callable[[PartitionKeys], Awaitable[str]],
        *,
        done: str,
        action: str,
    ) -> None:
        check_token("job id", job_id)
        for keys in self._partitions(function, workspace):
            state = await script(keys)
            if state == done:
                return
            if state != "missing":
                raise WrongJobState(job_id, state, action)
        raise JobNotFound(f"no job {job_id!r} of function {function!r}")

    def _partitions(self, function: str, workspace: str | None) -> list[PartitionKeys]:
        (fn,) = self.registry.select([function])
        if workspace is not None:
            return [PartitionKeys(fn.name, partition_of(workspace, fn.options.partitions))]
        return [PartitionKeys(fn.name, p) for p in range(fn.options.partitions)]
