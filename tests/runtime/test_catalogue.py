"""Publishing by name: workers write their functions' catalogue to Redis at start,
and a Client built from it publishes without importing any handler."""

from __future__ import annotations

import msgspec
import pytest

from sluice.runtime import Client, Job, PayloadTooLarge, UnknownFunction, function
from sluice.runtime import catalogue as runtime_catalogue
from sluice.runtime.registry import Registry
from sluice.runtime.testing import running
from sluice.streams import catalogue
from sluice.streams.connection import Redis
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys, partition_of
from tests.redis_server import RedisServer
from tests.runtime.helpers import wait_until


class Note(msgspec.Struct):
    text: str
    copies: int = 1


@function("notes.write", input=Note, partitions=2, max_payload_bytes=200, topics=("notes",))
async def write_note(job: Job[Note]) -> str:
    return job.data.text * job.data.copies


async def test_a_client_from_the_catalogue_publishes_by_name(
    redis: Redis, shared_server: RedisServer
) -> None:
    with pytest.raises(UnknownFunction, match=r"no function handles 'notes\.write'"):
        await (await Client.from_catalogue(redis)).publish(
            "notes.write", workspace="acme", data={"text": "hi"}
        )
    async with running([write_note], shared_server.url):

        async def written() -> bool:
            return bool(await catalogue.read(redis))

        await wait_until(written, what="the worker to write the catalogue")
        (entry,) = await catalogue.read(redis)
        assert (entry.name, entry.topics, entry.partitions) == ("notes.write", ("notes",), 2)
        assert entry.schema["$defs"]["Note"]["required"] == ["text"]

        client = await Client.from_catalogue(redis)
        # By name or topic, a dict or the input Struct (a publisher that has it).
        by_name = await client.publish("notes.write", workspace="acme", data={"text": "a"})
        by_topic = await client.publish("notes", workspace="zeta", data=Note("b", 2))
        with pytest.raises(UnknownFunction, match=r"no function handles 'nope' \(known: "):
            await client.publish("nope", workspace="acme", data={})
        with pytest.raises(PayloadTooLarge, match="the limit is 200"):
            await client.publish("notes", workspace="acme", data={"text": "x" * 300})
        # Checked by the worker: a payload its input type refuses is dead at once.
        wrong = await client.publish("notes.write", workspace="acme", data={"text": 5})
        acme = PartitionKeys("notes.write", partition_of("acme", 2))

        async def refused() -> bool:
            found = await get_job(redis, acme, wrong.id)
            return found is not None and found.state == "dead"

        await wait_until(refused, what="the wrong payload dead-lettered")
        dead = await get_job(redis, acme, wrong.id)
        assert dead is not None
        assert dead.error == "payload does not match Note: Expected `str`, got `int` - at `$.text`"

        async def both_done() -> bool:
            found = [
                await get_job(redis, PartitionKeys("notes.write", partition_of(ws, 2)), r.id)
                for ws, r in (("acme", by_name), ("zeta", by_topic))
            ]
            return all(f is not None and f.state == "completed" for f in found)

        await wait_until(both_done, what="both jobs, each in its workspace's partition")
    done = await get_job(redis, PartitionKeys("notes.write", partition_of("zeta", 2)), by_topic.id)
    assert done is not None
    assert done.result == "bb"


async def test_an_entry_holds_what_publishing_needs(
    redis: Redis, shared_server: RedisServer
) -> None:
    registry = Registry([write_note])
    await runtime_catalogue.announce(redis, list(registry))
    (entry,) = await catalogue.read(redis)
    assert entry.share == write_note.options.share
    assert entry.max_payload_bytes == 200
