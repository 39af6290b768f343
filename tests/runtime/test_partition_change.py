"""A function's partition count changed between two runs of its workers: the jobs
left in the old layout's partitions (unread, pending in a dead worker, delayed, in
a workspace's backlog) all run, each once, and stay found by id meanwhile.

On a single server partition p keeps its keys whatever the count, so growing
strands nothing and shrinking strands the partitions past the new count; on a
cluster every partition's keys depend on the count (streams.keys.spread_tag).
"""

from __future__ import annotations

import collections

import msgspec
import pytest

from sluice.runtime import Client, Event, Job, function
from sluice.runtime.client.jobs import Jobs
from sluice.runtime.declare import Function
from sluice.runtime.registry import Registry
from sluice.streams import catalogue, layouts
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import GROUP, partition_of
from tests.conftest import Target
from tests.redis_server import RedisServer
from tests.runtime.helpers import hosting, wait_until

NAME = "resized"
# Of 2 partitions: 0, 0, 1, 1; of 4: 2, 0, 3, 1.
WORKSPACES = ("w0", "w1", "a", "b")


class Item(msgspec.Struct):
    n: int


def declared(
    partitions: int, seen: collections.Counter[str], retention_s: float = 86_400.0
) -> Function[Item]:
    async def handle(job: Job[Item]) -> None:
        seen[job.id] += 1

    # A share of 2 puts a busy workspace's further jobs in its backlog; a lost
    # worker's jobs are taken over after a second.
    return function(
        NAME,
        input=Item,
        partitions=partitions,
        workspace_share=2,
        visibility_timeout_s=1,
        retention_s=retention_s,
    )(handle)


async def leave_jobs(target: Target, jobs: int) -> tuple[set[str], str]:
    """Jobs of the 2-partition layout, as its workers left them: announced in the
    catalogue, some delayed, some in backlogs, two pending for a worker that died.
    Returns the ids meant to run and the id of one due in an hour."""
    old = declared(2, collections.Counter())
    async with hosting(target.url, [old]):

        async def announced() -> bool:
            return any(e.name == NAME for e in await catalogue.read(target.redis))

        await wait_until(announced, 10, "the 2-partition worker to announce its function")
    client = Client(target.redis, Registry([old]))
    # Workspaces over both partitions, each beyond its share of the stream.
    events = [Event(workspace=WORKSPACES[i % 4], data={"n": i}) for i in range(jobs)]
    assert {partition_of(e.workspace, 2) for e in events} == {0, 1}
    ids = {r.id for r in await client.publish_many(NAME, events)}
    for w in WORKSPACES:
        ids.add((await client.publish(NAME, workspace=w, data={"n": -1}, delay_ms=200)).id)
    later = await client.publish(NAME, workspace="a", data={"n": 0}, delay_ms=3_600_000)
    # A worker that read two jobs of each partition and died.
    for keys in Registry([old]).partitions(NAME, cluster=is_cluster(target.redis)):
        read = await target.redis.xreadgroup(GROUP, "gone", {keys.stream: ">"}, count=2)
        assert read
    return ids, later.id


@pytest.mark.parametrize("partitions", [4, 1])
async def test_jobs_of_the_old_layout_all_run_once(target: Target, partitions: int) -> None:
    ids, later = await leave_jobs(target, 40 if is_cluster(target.redis) else 200)
    seen: collections.Counter[str] = collections.Counter()
    new = declared(partitions, seen)
    jobs = Jobs(target.redis, Registry([new]))
    # Found by id through the new layout while it waits in the old one ("a" was in
    # partition 1 of 2, is in 3 of 4 and 0 of 1).
    record = await jobs.get(NAME, later, workspace="a")
    assert record is not None
    assert record.state == "delayed"
    await jobs.cancel(NAME, later, workspace="a")
    async with hosting(target.url, [new], scheduler=True, recheck_s=0.2):

        async def all_ran() -> bool:
            return set(seen) >= ids

        await wait_until(all_ran, 20, "every job of the old layout to run")
    assert set(seen) == ids
    assert set(seen.values()) == {1}
    done = await jobs.get(NAME, next(iter(ids)))
    assert done is not None
    assert done.state == "completed"


async def test_a_drained_layout_is_forgotten_once_its_records_are_gone(
    redis: Redis, shared_server: RedisServer
) -> None:
    target = Target(redis, shared_server.url)
    ids, later = await leave_jobs(target, 20)
    await Jobs(redis, Registry([declared(2, collections.Counter())])).cancel(NAME, later)
    assert await layouts.known(redis, NAME) == {2}
    seen: collections.Counter[str] = collections.Counter()
    # Finished records kept half a second: then nothing is left of the old layout.
    async with hosting(target.url, [declared(1, seen, retention_s=0.5)], scheduler=True):

        async def forgotten() -> bool:
            return await layouts.known(redis, NAME) == {1}

        await wait_until(forgotten, 20, "the layout of 2 partitions to be forgotten")
    assert set(seen) == ids
