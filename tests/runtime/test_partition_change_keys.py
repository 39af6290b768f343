"""A function's partition count changed while a reminder waits in the old layout:
its business key and tags still name it, so publishing the key again replaces it
(or, with its id, is its duplicate), and cancelling or counting by key or tag
reaches it, on a single server and a cluster; no reminder runs twice or after
its cancel.
"""

from __future__ import annotations

import collections

import msgspec
import pytest

from sluice.runtime import Client, Job, function
from sluice.runtime.client.publish import Receipt
from sluice.runtime.declare import Function
from sluice.runtime.errors import JobNotFound
from sluice.runtime.registry import Registry
from sluice.streams import catalogue, layouts
from sluice.streams.connection import is_cluster
from sluice.streams.jobs import Counts, counts
from sluice.streams.keys import partition_of
from sluice.streams.tagged import TagCounts
from tests.conftest import Target
from tests.runtime.helpers import hosting, wait_until

NAME = "reminded"
# In partition 1 of 2 and 3 of 4: other keys on a single server and a cluster alike.
WORKSPACE = "a"
KEY = "booking:1:sms:3600"
TAG = "booking:1"
HOUR_MS = 3_600_000


class Reminder(msgspec.Struct):
    text: str


def declared(partitions: int, seen: collections.Counter[str]) -> Function[Reminder]:
    async def send(job: Job[Reminder]) -> None:
        seen[job.id] += 1

    return function(NAME, input=Reminder, partitions=partitions)(send)


async def changed(target: Target, seen: collections.Counter[str]) -> tuple[Client, Receipt]:
    """A reminder due in an hour, keyed and tagged, published under 2 partitions;
    then the count changed to 4 and its workers started. Returns a client of the
    4-partition function and the reminder's receipt."""
    assert (partition_of(WORKSPACE, 2), partition_of(WORKSPACE, 4)) == (1, 3)
    for count in (2, 4):
        fn = declared(count, seen)
        async with hosting(target.url, [fn]):

            async def announced(count: int = count) -> bool:
                entries = await catalogue.read(target.redis)
                return any(e.name == NAME and e.partitions == count for e in entries)

            await wait_until(announced, 10, f"the {count}-partition worker to announce itself")
        if count == 2:
            reminder = await Client(target.redis, Registry([fn])).publish(
                NAME,
                workspace=WORKSPACE,
                data={"text": "in an hour"},
                id="r1",
                delay_ms=HOUR_MS,
                key=KEY,
                tags=[TAG],
            )
    assert await layouts.known(target.redis, NAME) == {2, 4}
    return Client(target.redis, Registry([declared(4, seen)])), reminder


async def everywhere(client: Client) -> Counts:
    """The function's counts over the partitions of both layouts, each once."""
    cluster = is_cluster(client.redis)
    places = {k.tag: k for n in (2, 4) for k in client.registry.layout(NAME, n, cluster=cluster)}
    parts = [await counts(client.redis, keys) for keys in places.values()]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


async def test_the_key_published_again_replaces_the_job_of_the_old_layout(
    target: Target,
) -> None:
    seen: collections.Counter[str] = collections.Counter()
    client, reminder = await changed(target, seen)
    # The same id and key again (a retried publish): a duplicate, nothing written.
    again = await client.publish(
        NAME,
        workspace=WORKSPACE,
        data={"text": "in an hour"},
        id="r1",
        delay_ms=HOUR_MS,
        key=KEY,
        tags=[TAG],
    )
    assert again.duplicate
    assert (await everywhere(client)).delayed == 1
    # The booking moved: the key again, a new job, replaces the one not yet sent.
    moved = await client.publish(
        NAME, workspace=WORKSPACE, data={"text": "moved"}, delay_ms=HOUR_MS, key=KEY, tags=[TAG]
    )
    assert not moved.duplicate
    assert await client.jobs.get(NAME, reminder.id, workspace=WORKSPACE) is None
    assert (await everywhere(client)).delayed == 1
    assert await client.jobs.tag_counts(TAG, workspace=WORKSPACE) == {NAME: TagCounts(delayed=1)}
    # Due now: it runs, once, and nothing of the key is left to run later.
    await client.jobs.reschedule(NAME, moved.id, workspace=WORKSPACE)
    async with hosting(target.url, [declared(4, seen)], scheduler=True, recheck_s=0.2):

        async def ran() -> bool:
            return (await everywhere(client)).completed == 1

        await wait_until(ran, 10, "the moved reminder to run")
    total = await everywhere(client)
    assert (total.delayed, total.waiting, total.completed) == (0, 0, 1)
    assert set(seen.values()) == {1}


async def test_cancel_and_count_by_key_and_tag_reach_the_old_layout(target: Target) -> None:
    seen: collections.Counter[str] = collections.Counter()
    client, reminder = await changed(target, seen)
    jobs = client.jobs
    # A second reminder of the booking, published after the change: the new layout.
    later = await client.publish(
        NAME,
        workspace=WORKSPACE,
        data={"text": "in two hours"},
        delay_ms=2 * HOUR_MS,
        key="booking:1:sms:7200",
        tags=[TAG],
    )
    assert await jobs.tag_counts(TAG, workspace=WORKSPACE) == {NAME: TagCounts(delayed=2)}
    assert await jobs.cancel_key(NAME, KEY, workspace=WORKSPACE) == "r1"
    with pytest.raises(JobNotFound):
        await jobs.cancel_key(NAME, KEY, workspace=WORKSPACE)
    assert await jobs.tag_counts(TAG, workspace=WORKSPACE) == {NAME: TagCounts(delayed=1)}
    # Published again under the old key, in the old layout (a publisher of the old
    # count during a rolling deploy): the tag's cancel reaches both layouts.
    old = Client(target.redis, Registry([declared(2, seen)]))
    back = await old.publish(
        NAME, workspace=WORKSPACE, data={"text": "x"}, delay_ms=HOUR_MS, key=KEY, tags=[TAG]
    )
    cancelled = await jobs.cancel_tag(TAG, workspace=WORKSPACE)
    assert sorted(cancelled.cancelled) == sorted([later.id, back.id])
    assert await jobs.tag_counts(TAG, workspace=WORKSPACE) == {}
    for job_id in (reminder.id, later.id, back.id):
        record = await jobs.get(NAME, job_id, workspace=WORKSPACE)
        assert record is not None
        assert record.state == "cancelled"
    total = await everywhere(client)
    assert (total.delayed, total.waiting, total.cancelled) == (0, 0, 3)


@pytest.mark.parametrize(
    ("partition", "old", "new", "strays"),
    [
        (1, 2, 4, True),  # crc % 2 == 1: crc % 4 is 1 or 3
        (0, 2, 4, True),
        (0, 4, 2, False),  # a divisor: crc % 4 == 1 -> crc % 2 == 1
        (1, 4, 2, False),
        (0, 2, 1, False),
        (0, 3, 2, True),  # crc % 3 == 0: crc 3 is 1 of 2
    ],
)
def test_a_shared_partition_holds_strays_unless_the_new_count_divides_the_old(
    partition: int, old: int, new: int, strays: bool
) -> None:
    assert layouts.strays(partition, old, new) is strays
