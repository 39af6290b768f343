"""Delayed jobs, promotion and retries: the scripts' semantics against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from sluice.streams import envelope as env
from sluice.streams.cancel import cancel_job, reschedule
from sluice.streams.connection import Redis
from sluice.streams.consume import ensure_group, read, refill, taken
from sluice.streams.delayed import promote_due
from sluice.streams.jobs import counts, get_job
from sluice.streams.keys import PartitionKeys
from sluice.streams.publish import Outgoing, publish
from sluice.streams.settle import Completed, Retried, settle
from tests.conftest import Target


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


KEYS = PartitionKeys("fn", 0)
HOUR_MS = 3_600_000


def job(job_id: str, *, due_ms: int = 0, delay_ms: int = 0) -> Outgoing:
    payload = env.encode_payload({"x": 1})
    return Outgoing(env.Envelope(job_id, "fn", "ws", payload, env.now_ms()), due_ms, delay_ms)


async def subscribed(redis: Redis) -> PubSub:
    """Subscribed to the partition's wake channel (sharded, as the scripts publish it)."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # which node owns the channel
    pubsub = redis.pubsub()
    await pubsub.ssubscribe(KEYS.wake)
    confirmation = await wake_message(pubsub)
    assert confirmation is not None
    assert confirmation["type"] == "ssubscribe"
    return pubsub


async def wake_message(pubsub: PubSub) -> dict[str, Any] | None:
    """The next message: a cluster's sharded ones come from the channel's node."""
    if isinstance(pubsub, ClusterPubSub):
        return await pubsub.get_sharded_message(timeout=1)
    message: dict[str, Any] | None = await pubsub.get_message(timeout=1)
    return message


async def cancel_id(redis: Redis, job_id: str) -> str:
    return await cancel_job(redis, KEYS, [job_id])


async def redis_now_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def test_a_delayed_job_waits_in_the_delayed_set_with_its_due_time(redis: Redis) -> None:
    before = await redis_now_ms(redis)
    (written,) = await publish(redis, KEYS, [job("a", delay_ms=HOUR_MS)])
    assert (written.created, written.delayed) == (True, True)
    assert await redis.xlen(KEYS.stream) == 0
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert record.state == "delayed"
    assert before + HOUR_MS <= record.due_ms <= await redis_now_ms(redis) + HOUR_MS
    assert (await counts(redis, KEYS)).delayed == 1
    # Not due: promotion moves nothing and says how long until it is.
    promoted = await promote_due(redis, KEYS, 100)
    assert promoted.moved == 0
    assert promoted.next_due_in_ms is not None
    assert HOUR_MS - 1000 < promoted.next_due_in_ms <= HOUR_MS


async def test_a_job_due_now_or_in_the_past_goes_straight_to_the_stream(redis: Redis) -> None:
    written = await publish(redis, KEYS, [job("a", due_ms=1), job("b", delay_ms=0)])
    assert [(w.created, w.delayed) for w in written] == [(True, False), (True, False)]
    assert await redis.xlen(KEYS.stream) == 2
    assert await redis.zcard(KEYS.delayed) == 0


async def test_due_jobs_are_promoted_once_in_due_order(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    now = await redis_now_ms(redis)
    await publish(
        redis,
        KEYS,
        [job("late", due_ms=now + HOUR_MS), job("d", delay_ms=20), job("c", delay_ms=10)],
    )
    promoted = await _promote_when_due(redis, 2)
    assert promoted == 2
    got = await read(redis, KEYS, "c1", 10, 100)
    assert [env.decode(d.envelope).id for d in got] == ["c", "d"]
    record = await get_job(redis, KEYS, "c")
    assert record is not None
    assert (record.state, record.consumer) == ("active", "c1")
    again = await promote_due(redis, KEYS, 100)
    assert again.moved == 0
    assert (await counts(redis, KEYS)).promoted == 2


async def test_racing_promoters_move_each_job_exactly_once(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    ids = [f"j{i}" for i in range(2000)]
    await publish(redis, KEYS, [job(i, delay_ms=HOUR_MS) for i in ids])
    await redis.zadd(KEYS.delayed, dict.fromkeys(ids, 0))  # all fall due at once
    results = await asyncio.gather(*(promote_due(redis, KEYS, 50) for _ in range(60)))
    assert sum(r.moved for r in results) == 2000
    # One workspace: past its share, jobs wait in the backlog and enter as read.
    got = []
    while batch := await read(redis, KEYS, "c1", 5000, 100):
        got += batch
        await refill(redis, KEYS, taken(batch), drained=True)
    assert sorted(env.decode(d.envelope).id for d in got) == sorted(ids)


async def test_a_retry_settlement_parks_the_next_attempt_with_its_errors(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job("a")])
    pubsub = await subscribed(redis)
    (d,) = await read(redis, KEYS, "c1", 10, 100)
    first = env.decode(d.envelope)
    following = env.Envelope(
        first.id, first.function, first.workspace, first.payload, first.created_ms, 2,
        errors=("ValueError: no",),
    )  # fmt: skip
    settlement = Retried(
        d.entry_id, "a", "ws", 1, "ValueError: no", env.encode(following), HOUR_MS, env.NORMAL
    )
    assert (await settle(redis, KEYS, "c1", 60_000, [settlement], 1)).count == 1
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert (record.state, record.attempts, record.error) == ("delayed", 1, "ValueError: no")
    c = await counts(redis, KEYS)
    assert (c.waiting, c.active, c.delayed, c.failed) == (0, 0, 1, 1)
    # The only delayed job: schedulers are told when it falls due.
    message = await wake_message(pubsub)
    assert message is not None
    assert int(message["data"]) == record.due_ms
    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    # Due now: promoted with the next attempt's envelope.
    await redis.zadd(KEYS.delayed, {"a": 0})
    assert (await promote_due(redis, KEYS, 10)).moved == 1
    (again,) = await read(redis, KEYS, "c1", 10, 100)
    assert env.decode(again.envelope).attempt == 2
    queued = await get_job(redis, KEYS, "a")
    assert queued is not None
    assert (queued.state, queued.attempts, queued.error) == ("active", 1, "ValueError: no")


async def test_promotion_skips_an_id_whose_record_is_no_longer_delayed(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job("a", delay_ms=HOUR_MS)])
    await redis.hset(KEYS.jobs, "a", "completed|ws|1-0|1|1|2||")
    await redis.zadd(KEYS.delayed, {"a": 0})
    assert (await promote_due(redis, KEYS, 10)).moved == 0
    assert await redis.xlen(KEYS.stream) == 0
    assert await redis.zcard(KEYS.delayed) == 0


async def _promote_when_due(redis: Redis, expected: int) -> int:
    """Promote until `expected` jobs moved, sleeping as long as the script says."""
    moved = 0
    while moved < expected:
        result = await promote_due(redis, KEYS, 100)
        moved += result.moved
        if result.next_due_in_ms is not None and moved < expected:
            # The event awaited is time itself: the due time the script reported.
            await asyncio.sleep(result.next_due_in_ms / 1000)
    return moved


async def test_cancel_removes_a_delayed_or_unread_job_and_refuses_the_rest(
    redis: Redis,
) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job("later", delay_ms=HOUR_MS), job("held"), job("unread")])
    (held,) = await read(redis, KEYS, "c1", 1, 100)
    assert await cancel_id(redis, "later") == "cancelled"
    assert await cancel_id(redis, "unread") == "cancelled"
    assert await cancel_id(redis, "held") == "active"
    assert await cancel_id(redis, "later") == "cancelled"  # already: nothing changes
    assert await cancel_id(redis, "nope") == "missing"
    await settle(redis, KEYS, "c1", 60_000, [Completed(held.entry_id, "held", "ws", 1)], 1)
    assert await cancel_id(redis, "held") == "completed"
    # Neither cancelled job can run any more: not in the stream, not in the delayed set.
    assert await read(redis, KEYS, "c1", 10, 100) == []
    await redis.zadd(KEYS.delayed, {"x": 0})  # a stray id only, to run a promotion
    assert (await promote_due(redis, KEYS, 10)).moved == 0
    record = await get_job(redis, KEYS, "later")
    assert record is not None
    assert record.state == "cancelled"
    c = await counts(redis, KEYS)
    assert (c.waiting, c.active, c.delayed, c.cancelled) == (0, 0, 0, 2)


async def test_reschedule_moves_only_a_delayed_job_and_wakes_schedulers(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job("later", delay_ms=HOUR_MS), job("now")])
    pubsub = await subscribed(redis)
    assert await reschedule(redis, KEYS, ["later"], delay_ms=60_000) == "delayed"
    message = await wake_message(pubsub)
    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    record = await get_job(redis, KEYS, "later")
    assert record is not None
    assert message is not None
    assert int(message["data"]) == record.due_ms
    assert record.due_ms - await redis_now_ms(redis) <= 60_000
    assert await reschedule(redis, KEYS, ["now"], delay_ms=1) == "queued"
    assert await reschedule(redis, KEYS, ["nope"], delay_ms=1) == "missing"
    # Due at once: the next promotion moves it, with its envelope intact.
    assert await reschedule(redis, KEYS, ["later"], due_ms=1) == "delayed"
    assert (await promote_due(redis, KEYS, 10)).moved == 1
    got = await read(redis, KEYS, "c1", 10, 100)
    assert [env.decode(d.envelope).id for d in got] == ["now", "later"]
