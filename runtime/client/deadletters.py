"""Dead letters of a deployment's functions, across partitions: read, replay, purge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.deadletter import DeadLetter, dead_letters, newest_letter, purge, replay
from sluice.streams.keys import PartitionKeys, shown_id

# Letters read per round trip while walking a dead-letter stream.
PAGE = 500

Action = Callable[[Redis, PartitionKeys, Sequence[DeadLetter]], Awaitable[int]]


class DeadLetters:
    """Operate on the dead letters of the functions in `registry`."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis = redis
        self.registry = registry

    async def read(
        self, function: str, *, workspace: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """The oldest `limit` dead letters of `function`, optionally of one workspace."""
        found: list[DeadLetter] = []
        async for _, page in self._keyed_pages(function, workspace, None):
            found += page[: limit - len(found)]
            if len(found) >= limit:
                break
        return found

    async def replay(
        self,
        function: str,
        *,
        ids: Collection[str] | None = None,
        workspace: str | None = None,
    ) -> int:
        """Queue dead jobs of `function` again (those with `ids`, or all, optionally
        of one workspace); each starts over at attempt 1. Returns how many.

        An id matches as its publisher gave it or as stored (`job.id` in the
        handler); ids are per workspace, so give `workspace` to keep to one."""
        share = self.registry.share(function)

        async def requeue(redis: Redis, keys: PartitionKeys, page: Sequence[DeadLetter]) -> int:
            return await replay(redis, keys, page, share)

        return await self._apply(requeue, function, ids, workspace)

    async def purge(
        self,
        function: str,
        *,
        ids: Collection[str] | None = None,
        workspace: str | None = None,
    ) -> int:
        """Delete dead letters of `function` and their records for good. Returns how many."""
        return await self._apply(purge, function, ids, workspace)

    async def _apply(
        self,
        action: Action,
        function: str,
        ids: Collection[str] | None,
        workspace: str | None,
    ) -> int:
        done = 0
        async for keys, page in self._keyed_pages(function, workspace, ids):
            done += await action(self.redis, keys, page)
        return done

    async def _keyed_pages(
        self, function: str, workspace: str | None, ids: Collection[str] | None
    ) -> AsyncIterator[tuple[PartitionKeys, list[DeadLetter]]]:
        """Matching letters partition by partition, a page at a time, oldest first.

        Only letters there at the start: a replayed job that fails at once again
        writes a new letter, which this call must not replay again and again.
        """
        wanted = None if ids is None else set(ids)
        for keys in self.registry.partitions(function, workspace, cluster=is_cluster(self.redis)):
            after, until = "-", await newest_letter(self.redis, keys)
            while letters := await dead_letters(self.redis, keys, PAGE, after, until):
                after = letters[-1].entry_id
                page = [
                    letter
                    for letter in letters
                    if (
                        wanted is None
                        or letter.envelope.id in wanted
                        or shown_id(letter.envelope.id) in wanted
                    )
                    and (workspace is None or letter.envelope.workspace == workspace)
                ]
                if page:
                    yield keys, page
