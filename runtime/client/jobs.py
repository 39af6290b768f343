"""Jobs by id, business key or tag: look up, cancel, move the due time; counts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import msgspec

from sluice.runtime.client.layouts import Layouts
from sluice.runtime.client.recent import page_all
from sluice.runtime.client.timing import When, due
from sluice.runtime.errors import InvalidCursor, JobNotFound, WrongJobState
from sluice.runtime.registry import Registry
from sluice.streams import cancel as scripts
from sluice.streams import layouts
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.jobs import Counts, JobRecord, counts, find_job
from sluice.streams.keys import PartitionKeys, check_token, job_ref, shown_id
from sluice.streams.listing import Listable, Page, list_jobs, offset
from sluice.streams.tagged import TagCounts, tag_counts


class Cancelled(msgspec.Struct, frozen=True):
    """What a cancel by tag did."""

    cancelled: tuple[str, ...]
    # Jobs of the tag that were running: they finish; cancel them in the handler.
    running: tuple[str, ...]


# The most jobs one page lists.
MAX_PAGE = 1000


class Jobs:
    """Operate on single jobs of the functions in `registry`.

    A job lives in one partition of its function: the one its workspace maps to.
    Pass `workspace` when known; otherwise each partition is asked in turn.

    Ids are per workspace: given `workspace`, a job is found by the id its
    publisher gave or was given, and only if it is of that workspace. Without it
    only a generated id (or a stored one, `ws~id`, as `job.id` in a handler)
    finds its job: the same given id may name a job in each workspace.
    """

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry
        self.layouts = Layouts(redis, registry)

    async def get(
        self, function: str, job_id: str, *, workspace: str | None = None
    ) -> JobRecord | None:
        owner, ids = job_ref(job_id, workspace)
        async for keys in self._places(function, owner):
            record = await find_job(self.redis, keys, ids, owner or "")
            if record is not None:
                return record
        return None

    async def cancel(self, function: str, job_id: str, *, workspace: str | None = None) -> None:
        """Cancel a job that has not started: a delayed one, or a queued one no worker
        has read. Cancelling a cancelled job does nothing, so callers may retry.
        Raises `WrongJobState` for a running or finished job."""

        async def cancel(keys: PartitionKeys, ids: list[str], owner: str) -> str:
            share = self.registry.share(function)
            return await scripts.cancel_job(self.redis, keys, ids, owner, share)

        await self._change(
            function, job_id, workspace, cancel, done="cancelled", action="cancelled"
        )

    async def cancel_key(self, function: str, key: str, *, workspace: str) -> str:
        """Cancel the live job of business `key`; returns its id. Raises `JobNotFound`
        when the key names no job (or its job finished), `WrongJobState` when it runs.
        Looks in the workspace's partitions of earlier layouts too (runtime.client.layouts)."""
        check_token("key", key)
        check_token("workspace", workspace)
        places = await self.layouts.places(function, workspace)
        share = self.registry.share(function)
        outcome: dict[str, str] = {}
        for keys in places:
            outcome |= await scripts.cancel(self.redis, keys, "key", key, workspace, share)
        if not outcome:
            raise JobNotFound(
                f"no live job of function {function!r} has key {key!r} in {workspace!r}"
            )
        cancelled = [stored for stored, state in outcome.items() if state == "cancelled"]
        if cancelled:
            return shown_id(cancelled[-1])
        stored, state = next(iter(outcome.items()))
        raise WrongJobState(shown_id(stored), state, "cancelled")

    async def cancel_tag(
        self, tag: str, *, workspace: str, functions: Iterable[str] | None = None
    ) -> Cancelled:
        """Cancel every job of `tag` in `workspace` that has not started, in every
        function (or those named): a cancelled booking cancels all its reminders.
        Looks in the workspace's partitions of earlier layouts too."""
        check_token("tag", tag)
        check_token("workspace", workspace)
        names = list(functions) if functions is not None else [fn.name for fn in self.registry]
        cancelled: list[str] = []
        running: list[str] = []
        for name in names:
            places = await self.layouts.places(name, workspace)
            share = self.registry.share(name)
            for keys in places:
                outcome = await scripts.cancel(self.redis, keys, "tag", tag, workspace, share)
                for job_id, state in outcome.items():
                    if state == "cancelled":
                        cancelled.append(shown_id(job_id))
                    elif state == "active":
                        running.append(shown_id(job_id))
        return Cancelled(tuple(cancelled), tuple(running))

    async def tag_counts(
        self, tag: str, *, workspace: str, functions: Iterable[str] | None = None
    ) -> dict[str, TagCounts]:
        """The live jobs of `tag` in `workspace` by function and state (delayed,
        waiting, active), every function's or those named; a function with none is
        left out. A finished job has left its tags: a campaign's progress is what
        it published less what is still live (streams.tagged). Counts the
        workspace's partitions of earlier layouts too."""
        check_token("tag", tag)
        check_token("workspace", workspace)
        names = list(functions) if functions is not None else [fn.name for fn in self.registry]
        found: dict[str, TagCounts] = {}
        for name in names:
            counted = TagCounts()
            for keys in await self.layouts.places(name, workspace):
                counted += await tag_counts(self.redis, keys, workspace, tag)
            if counted != TagCounts():
                found[name] = counted
        return found

    async def reschedule(
        self,
        function: str,
        job_id: str,
        *,
        delay_ms: int | None = None,
        run_at: When | None = None,
        workspace: str | None = None,
    ) -> None:
        """Move a delayed job's due time (neither given: due now, promoted on the
        schedulers' wake-up). Raises `WrongJobState` for any other job."""
        due_ms, delay = due(delay_ms, run_at, f"job {job_id}")

        async def move(keys: PartitionKeys, ids: list[str], owner: str) -> str:
            return await scripts.reschedule(
                self.redis, keys, ids, owner, due_ms=due_ms, delay_ms=delay
            )

        await self._change(function, job_id, workspace, move, done="delayed", action="rescheduled")

    async def page(
        self,
        function: str | None,
        state: Listable,
        *,
        workspace: str | None = None,
        cursor: str = "",
        limit: int = 100,
    ) -> Page:
        """A page of `function`'s jobs in `state` (optionally of one workspace), or
        with `function` None of every function's, newest first (runtime.client.recent).

        Pass the returned cursor back for the next page; "" means no more. A page
        may hold fewer than `limit` jobs (some filtered out) and still have more.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
        if function is None:
            return await page_all(
                self.redis, self.registry, state, workspace=workspace, cursor=cursor, limit=limit
            )
        partitions = self.registry.partitions(function, workspace, cluster=is_cluster(self.redis))
        start, inner = _position(cursor, len(partitions))
        for i in range(start, len(partitions)):
            page = await list_jobs(
                self.redis, partitions[i], state, inner if i == start else "", limit
            )
            jobs = [j for j in page.jobs if workspace is None or j.workspace == workspace]
            if page.cursor:
                return Page(jobs, f"{i}:{page.cursor}")
            if jobs or i + 1 == len(partitions):
                return Page(jobs, f"{i + 1}:" if i + 1 < len(partitions) else "")
        return Page([], "")

    async def counts(self, function: str) -> Counts:
        """The function's counts, summed over its partitions."""
        parts = [
            await counts(self.redis, keys)
            for keys in self.registry.partitions(function, None, cluster=is_cluster(self.redis))
        ]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    async def _change(
        self,
        function: str,
        job_id: str,
        workspace: str | None,
        script: Callable[[PartitionKeys, list[str], str], Awaitable[str]],
        *,
        done: str,
        action: str,
    ) -> None:
        owner, ids = job_ref(job_id, workspace)
        async for keys in self._places(function, owner):
            state = await script(keys, ids, owner or "")
            if state == done:
                return
            if state != "missing":
                raise WrongJobState(job_id, state, action)
        raise JobNotFound(f"no job {job_id!r} of function {function!r}")

    async def _places(self, function: str, owner: str | None) -> AsyncIterator[PartitionKeys]:
        """Where a job of `owner` (None: any workspace) may be: its partition (every
        one without `owner`); then, only if it was not there, every other partition
        of the function's current and earlier layouts (streams.layouts), where the
        jobs stored before its partition count changed lie until drained."""
        cluster = is_cluster(self.redis)
        first = self.registry.partitions(function, owner, cluster=cluster)
        for keys in first:
            yield keys
        seen = {keys.tag for keys in first}
        declared = len(self.registry.partitions(function, cluster=cluster))
        for count in sorted({declared, *await layouts.known(self.redis, function)}):
            for keys in self.registry.layout(function, count, cluster=cluster):
                if keys.tag not in seen:
                    seen.add(keys.tag)
                    yield keys


def _position(cursor: str, partitions: int) -> tuple[int, str]:
    """(partition index, that partition's cursor) of a page's cursor "<index>:<inner>"."""
    if not cursor:
        return 0, ""
    index, sep, inner = cursor.partition(":")
    start = offset(index, "listing") if sep and index else partitions
    if start >= partitions:
        raise InvalidCursor(f"cursor {cursor!r} is not one a page of this listing returned")
    return start, inner
