"""How the ingress writes what concurrent requests publish (runtime.ingress.coalesce)."""

from __future__ import annotations

import asyncio

from sluice.runtime import Client, Event
from sluice.runtime.client.publish import CHUNK
from sluice.runtime.ingress.coalesce import Coalescer
from sluice.streams.connection import Redis
from tests.ingress.conftest import registry


async def test_small_publishes_are_not_held_behind_a_large_one(redis: Redis) -> None:
    client = Client(redis, registry())
    coalescer = Coalescer(client, timeout_s=30.0)
    coalescer.start()
    try:
        large = client.prepare(
            "tasks", [Event(workspace=f"w{n % 50}", data={"n": n}) for n in range(CHUNK * 10)]
        )
        small = client.prepare("tasks", [Event(workspace="acme", data={"n": -1})])
        large_done = coalescer.publish(large)
        (receipt,) = await coalescer.publish(small)
        # Written between the large one's script calls, not after all ten of them.
        assert not large_done.done()
        assert not receipt.duplicate
        receipts = await large_done
        assert len(receipts) == CHUNK * 10
        assert not any(r.duplicate for r in receipts)
    finally:
        await coalescer.stop()


async def test_many_small_publishes_share_script_calls(redis: Redis) -> None:
    client = Client(redis, registry())
    coalescer = Coalescer(client, timeout_s=30.0)
    coalescer.start()
    try:
        before = await redis.info("commandstats")
        publishes = [
            coalescer.publish(client.prepare("tasks", [Event(workspace="acme", data={"n": n})]))
            for n in range(50)
        ]
        answered = await asyncio.gather(*publishes)
        after = await redis.info("commandstats")
        assert [len(r) for r in answered] == [1] * 50
        assert len({r[0].id for r in answered}) == 50
        calls = after["cmdstat_evalsha"]["calls"] - before.get("cmdstat_evalsha", {}).get(
            "calls", 0
        )
        # Published in one tick: one call for all of them.
        assert calls == 1
    finally:
        await coalescer.stop()
