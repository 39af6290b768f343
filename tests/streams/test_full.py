"""A full Redis (at `maxmemory`, policy noeviction): new work is refused with
`RedisFull`, and the work Redis already holds still moves (backlog to stream,
due jobs to stream, outcomes settled), so workers drain it and free memory."""

from __future__ import annotations

import pytest

from sluice.streams import envelope as env
from sluice.streams.connection import Redis, connect
from sluice.streams.consume import ensure_group, read, refill, taken
from sluice.streams.delayed import promote_due
from sluice.streams.errors import RedisFull, RedisUnavailable
from sluice.streams.jobs import counts, get_job
from sluice.streams.keys import PartitionKeys
from sluice.streams.publish import Outgoing, publish
from sluice.streams.settle import Completed, Outcome, Retried, settle
from tests.conftest import settings_for
from tests.redis_server import RedisServer

KEYS = PartitionKeys("full", 0)
SHARE = 10


def job(job_id: str, workspace: str = "big") -> Outgoing:
    return Outgoing(env.Envelope(job_id, "full", workspace, env.encode_payload({"x": 1}), 0))


async def fill(redis: Redis) -> None:
    """1 byte: Redis is over its `maxmemory` whatever it holds."""
    await redis.config_set("maxmemory", 1)


async def test_a_publish_to_a_full_redis_raises_redis_full_and_writes_nothing(
    server: RedisServer,
) -> None:
    redis = connect(settings_for(server.url))
    try:
        await fill(redis)
        with pytest.raises(RedisFull) as raised:
            await publish(redis, KEYS, [job("a"), job("b")], SHARE)
        # Callers that retry an outage retry this too.
        assert isinstance(raised.value, RedisUnavailable)
        assert await get_job(redis, KEYS, "a") is None
        await redis.config_set("maxmemory", 0)
        assert [w.created for w in await publish(redis, KEYS, [job("a")], SHARE)] == [True]
    finally:
        await redis.aclose()


async def test_a_worker_joins_its_group_while_redis_is_full(server: RedisServer) -> None:
    redis = connect(settings_for(server.url))
    try:
        await ensure_group(redis, KEYS)
        await fill(redis)
        # Redis refuses XGROUP CREATE even for a group that exists: that one is joined.
        await ensure_group(redis, KEYS)
        with pytest.raises(RedisFull):
            await ensure_group(redis, PartitionKeys("other", 0))
    finally:
        await redis.aclose()


async def test_the_work_redis_holds_moves_on_while_it_is_full(server: RedisServer) -> None:
    """Backlogged jobs enter the stream, a retry is promoted and everything settles:
    refusing these would leave a full Redis full for good, its backlog stranded."""
    redis = connect(settings_for(server.url))
    try:
        await ensure_group(redis, KEYS)
        written = await publish(redis, KEYS, [job(f"j{i}") for i in range(3 * SHARE)], SHARE)
        assert sum(w.backlogged for w in written) == 2 * SHARE
        await fill(redis)
        retried = False
        for _ in range(10):
            got = await read(redis, KEYS, "c", SHARE, 1)
            await refill(redis, KEYS, taken(got), len(got) < SHARE, SHARE)
            outcomes: list[Outcome] = []
            for d in got:
                e = env.decode(d.envelope)
                if not retried:
                    retried = True
                    outcomes.append(
                        Retried(d.entry_id, e.id, e.workspace, 1, "x", d.envelope, 0, env.NORMAL)
                    )
                else:
                    outcomes.append(Completed(d.entry_id, e.id, e.workspace, 1))
            await settle(redis, KEYS, "c", 60_000, outcomes, len(outcomes))
            await promote_due(redis, KEYS, 100, SHARE)
        done = await counts(redis, KEYS)
        assert (done.completed, done.waiting, done.delayed) == (3 * SHARE, 0, 0)
        with pytest.raises(RedisFull):
            await publish(redis, KEYS, [job("late")], SHARE)
    finally:
        await redis.aclose()


async def test_a_function_no_worker_joined_is_joined_while_redis_is_full(
    server: RedisServer,
) -> None:
    """Jobs published before any worker ran filled Redis: the first worker joins and
    drains them. A full Redis refuses XGROUP CREATE, so the group is made where the
    stream is first written, while Redis still has room: by the publish, or by the
    promotion of a delayed job (which runs when full)."""
    redis = connect(settings_for(server.url))
    published, delayed = KEYS, PartitionKeys("later", 0)
    try:
        await publish(redis, published, [job("a"), job("b")], SHARE)
        # A delayed job writes no stream; made due now, its promotion writes the first.
        later = Outgoing(job("c").envelope, due_ms=env.now_ms() + 3_600_000)
        await publish(redis, delayed, [later], SHARE)
        await redis.zadd(delayed.delayed, {"c": 1}, xx=True)
        await fill(redis)
        assert (await promote_due(redis, delayed, 100, SHARE)).moved == 1
        for keys, ids in ((published, ["a", "b"]), (delayed, ["c"])):
            await ensure_group(redis, keys)
            got = await read(redis, keys, "first", SHARE, 1)
            assert [env.decode(d.envelope).id for d in got] == ids
    finally:
        await redis.aclose()
