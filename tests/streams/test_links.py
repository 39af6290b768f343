"""Business keys and tags: upsert, cancel by key or tag, release on finish."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.streams import envelope as env
from sluice.streams.cancel import cancel, cancel_job
from sluice.streams.connection import Redis
from sluice.streams.consume import ensure_group, read
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys, links
from sluice.streams.publish import Outgoing, publish
from sluice.streams.settle import Completed, settle
from sluice.streams.tagged import TagCounts, tag_counts
from tests.conftest import Target


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


KEYS = PartitionKeys("fn", 0)
HOUR_MS = 3_600_000


def job(
    job_id: str, *, key: str = "", tags: tuple[str, ...] = (), delay_ms: int = HOUR_MS
) -> Outgoing:
    payload = env.encode_payload({"x": job_id})
    e = env.Envelope(job_id, "fn", "ws", payload, env.now_ms(), key=key, tags=tags)
    return Outgoing(e, 0, delay_ms)


async def live(redis: Redis) -> list[str]:
    """Ids of jobs that can still run: delayed, or in the stream."""
    ids: Any = await redis.zrange(KEYS.delayed, 0, -1)
    entries: Any = await redis.xrange(KEYS.stream)
    return sorted([i.decode() for i in ids] + [env.decode(f[b"e"]).id for _, f in entries])


async def test_a_key_names_one_job_that_has_not_started(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job("a", key="booking:1:1h"), job("b", key="booking:1:1h")])
    assert await live(redis) == ["b"]
    assert await get_job(redis, KEYS, "a") is None
    b = await get_job(redis, KEYS, "b")
    assert b is not None
    assert (b.state, b.key) == ("delayed", "booking:1:1h")
    # A queued, unread job of the key is replaced too.
    await publish(redis, KEYS, [job("c", key="booking:1:1h", delay_ms=0)])
    await publish(redis, KEYS, [job("d", key="booking:1:1h", delay_ms=0)])
    assert await live(redis) == ["d"]
    assert await redis.hget(KEYS.keyed, "ws/booking:1:1h") == b"d"


async def test_a_running_job_keeps_running_and_the_key_moves_on(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job("a", key="k", delay_ms=0)])
    (held,) = await read(redis, KEYS, "c1", 10, 100)
    await publish(redis, KEYS, [job("b", key="k")])
    assert await live(redis) == ["a", "b"]
    # a finishes: the key stays with b.
    done = Completed(held.entry_id, "a", "ws", 1, links=links("ws", "a", "k", ()))
    await settle(redis, KEYS, "c1", 60_000, [done], 1)
    assert await redis.hget(KEYS.keyed, "ws/k") == b"b"
    assert (await cancel(redis, KEYS, "key", "k", "ws")) == {"b": "cancelled"}
    assert await redis.hget(KEYS.keyed, "ws/k") is None
    assert await cancel(redis, KEYS, "key", "k", "ws") == {}


async def test_cancel_by_tag_takes_every_unstarted_job_of_the_tag(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(
        redis,
        KEYS,
        [
            job("r24", key="b:1:24h", tags=("booking:1",)),
            job("r1", key="b:1:1h", tags=("booking:1", "vip")),
            job("now", tags=("booking:1",), delay_ms=0),
            job("running", tags=("booking:1",), delay_ms=0),
            job("other", tags=("booking:10",)),
        ],
    )
    got = await read(redis, KEYS, "c1", 10, 100)
    held = [d for d in got if env.decode(d.envelope).id == "running"]
    # "now" ran and finished: a finished job leaves its tag.
    tagged = links("ws", "now", "", ("booking:1",))
    done = [
        Completed(d.entry_id, "now", "ws", 1, links=tagged)
        for d in got
        if env.decode(d.envelope).id == "now"
    ]
    await settle(redis, KEYS, "c1", 60_000, done, 2)
    outcome = await cancel(redis, KEYS, "tag", "booking:1", "ws")
    assert outcome == {"r1": "cancelled", "r24": "cancelled", "running": "active"}
    assert await live(redis) == ["other", "running"]
    # The running one stays findable by its tag; the rest are released.
    tagged_now: Any = await redis.zrange(KEYS.tagged, 0, -1)
    members = {m.decode() for m in tagged_now}
    assert members == {"ws/booking:1/running", "ws/booking:10/other"}
    assert await redis.hlen(KEYS.keyed) == 0
    assert len(held) == 1


async def test_keys_replace_and_cancel_work_before_any_worker_made_the_group(
    redis: Redis,
) -> None:
    # No ensure_group: publishing before the first worker starts is allowed.
    await publish(redis, KEYS, [job("a", key="k", delay_ms=0), job("b", delay_ms=0)])
    await publish(redis, KEYS, [job("c", key="k", delay_ms=0)])
    assert await live(redis) == ["b", "c"]
    assert await cancel_job(redis, KEYS, ["b"], "ws") == "cancelled"
    assert await live(redis) == ["c"]


async def test_a_tags_live_jobs_are_counted_by_state(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    assert await tag_counts(redis, KEYS, "ws", "t") == TagCounts()
    tagged = ("t",)
    await publish(redis, KEYS, [job("a", tags=tagged, delay_ms=0), job("b", tags=tagged)])
    await publish(redis, KEYS, [job("c", tags=tagged, delay_ms=0), job("d", tags=("u",))])
    (held, _) = await read(redis, KEYS, "c1", 2, 100)
    # One more queued after the read: waiting, though an entry before it was read.
    await publish(redis, KEYS, [job("e", tags=tagged, delay_ms=0)])
    assert await tag_counts(redis, KEYS, "ws", "t") == TagCounts(delayed=1, waiting=1, active=2)
    done = Completed(held.entry_id, "a", "ws", 1, links=links("ws", "a", "", tagged))
    await settle(redis, KEYS, "c1", 60_000, [done], 1)
    # A finished job has left its tag; another workspace's are not counted.
    assert await tag_counts(redis, KEYS, "ws", "t") == TagCounts(delayed=1, waiting=1, active=1)
    assert await tag_counts(redis, KEYS, "other", "t") == TagCounts()
