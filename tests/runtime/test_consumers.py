"""A worker process gone leaves no consumer behind for long, and deleting the
consumer of a live worker that holds nothing costs it nothing: its next read makes
it again."""

from __future__ import annotations

import collections

from sluice.runtime import Client, Event, Job, function
from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis
from sluice.streams.consumers import consumers
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.reclaim import reclaim
from tests.redis_server import RedisServer
from tests.runtime.helpers import blocked_readers, hosting, wait_completed, wait_until
from tests.sample_functions import Task

KEYS = PartitionKeys("idle", 0)


async def test_a_dead_workers_empty_consumer_goes_and_a_live_idle_one_reads_on(
    redis: Redis, shared_server: RedisServer
) -> None:
    calls: collections.Counter[str] = collections.Counter()

    async def run(job: Job[Task]) -> None:
        calls[job.id] += 1

    idle = function("idle", input=Task, visibility_timeout_s=1.0)(run)
    client = Client(redis, Registry([idle]))
    async with hosting(shared_server.url, [idle]):
        await client.publish("idle", workspace="ws", data=Task(n=0))
        await wait_completed(redis, "idle", 1)
        (live,) = [c.name for c in await consumers(redis, KEYS)]
        # A worker that died holding nothing (its jobs settled or taken over).
        await redis.xgroup_createconsumer(KEYS.stream, GROUP, "gone-1")

        async def forgotten() -> bool:
            return "gone-1" not in [c.name for c in await consumers(redis, KEYS)]

        # Within a few visibility timeouts (1 s here), not an hour; a test that
        # waits longer fails.
        await wait_until(forgotten, timeout_s=10, what="the dead worker's consumer deleted")
        assert live in [c.name for c in await consumers(redis, KEYS)]

        # The live worker, idle in XREADGROUP, loses its consumer to another
        # worker's reclaimer (as if it had been idle that long) and reads on.
        async def waiting() -> bool:
            return await blocked_readers(redis) == 1

        await wait_until(waiting, what="the worker blocked in XREADGROUP")
        assert (await reclaim(redis, KEYS, "other", 60_000, "0-0", 10, stale_ms=0)).forgotten == 1
        assert live not in [c.name for c in await consumers(redis, KEYS)]
        await client.publish_many("idle", [Event(workspace="ws", data={"n": n}) for n in (1, 2)])
        await wait_completed(redis, "idle", 3)
    assert sorted(calls.values()) == [1, 1, 1]
