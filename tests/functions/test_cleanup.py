"""`sluice.cleanup` against a real redis-server: each kind of stale data removed,
fresh data of the same kinds kept."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from functions import FUNCTIONS
from functions.cleanup import cleanup
from sluice.runtime import Client, Housekeeping, Swept
from sluice.runtime.client.current import worker_context
from sluice.runtime.registry import Registry
from sluice.runtime.testing import Completed, call
from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.consume import ensure_group, read
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.publish import Outgoing, publish

REGISTRY = Registry(FUNCTIONS)
SMS = PartitionKeys("sms.send", 0)
EMAIL = PartitionKeys("email.send", 0)
DAY_MS = 86_400_000


def envelope(job_id: str) -> bytes:
    payload = env.encode_payload({"to": "+15550100", "body": "hi"})
    return env.encode(env.Envelope(job_id, "sms.send", "acme", payload, env.now_ms()))


async def test_stale_data_goes_and_fresh_data_stays(redis: Redis) -> None:
    now_ms = int(time.time() * 1000)
    # Dead letters: one 8 days old (sms.send keeps them 7), one of now.
    old_letter = f"{now_ms - 8 * DAY_MS}-0"
    await redis.xadd(SMS.dead, {"e": envelope("old"), "r": "x", "i": "old"}, id=old_letter)
    await redis.xadd(SMS.dead, {"e": envelope("new"), "r": "x", "i": "new"})
    # Limiter states (hex microseconds): one lapsed, one with slots reserved ahead.
    ahead = format((now_ms + 3_600_000) * 1000, "x")
    await redis.hset(SMS.rate, mapping={"lapsed": "1", "*": ahead})
    # Deferral records "count|last ms|asked|limit" and their histories.
    old, fresh = f"3|{now_ms - 31 * DAY_MS}|5|global", f"3|{now_ms}|5|global"
    await redis.hset(SMS.deferrals, mapping={"quiet": old, "busy": fresh})
    await redis.hset(SMS.deferlog, mapping={"quiet": "1|5|3|global|50", "busy": "2|5|3|global|50"})
    # Consumers: idle ones of a fresh group are kept (idle well under a day).
    await ensure_group(redis, EMAIL)
    await redis.xgroup_createconsumer(EMAIL.stream, GROUP, "worker-gone")

    outcome = await asyncio.get_running_loop().create_task(
        call(cleanup, {}, workspace="ops"), context=worker_context(Client(redis, REGISTRY))
    )
    assert isinstance(outcome, Completed), outcome
    assert outcome.result.total == Swept(limiter_states=1, deferral_records=1, dead_letters=1)
    assert outcome.result.functions == {"sms.send": outcome.result.total}

    letters: Any = await redis.xrange(SMS.dead)
    assert [fields[b"i"] for _, fields in letters] == [b"new"]
    assert await redis.hkeys(SMS.rate) == [b"*"]
    assert await redis.hkeys(SMS.deferrals) == [b"busy"]
    assert await redis.hkeys(SMS.deferlog) == [b"busy"]
    assert [c["name"] for c in await redis.xinfo_consumers(EMAIL.stream, GROUP)] == [b"worker-gone"]


async def test_a_consumer_gone_is_deleted_and_one_holding_a_job_kept(redis: Redis) -> None:
    await ensure_group(redis, EMAIL)
    job = env.Envelope("j1", "email.send", "acme", env.encode_payload({}), env.now_ms())
    await publish(redis, EMAIL, [Outgoing(job, 0, 0)])
    assert await read(redis, EMAIL, "worker-busy", 10, 100)
    await redis.xgroup_createconsumer(EMAIL.stream, GROUP, "worker-gone")
    # Idle for at least a millisecond: the threshold, as a day is in production.
    await asyncio.sleep(0.01)
    removed = await Housekeeping(redis, REGISTRY).clean(consumer_idle_s=0.001, deferrals_s=DAY_MS)
    assert removed == {"email.send": Swept(consumers=1)}
    names = [c["name"] for c in await redis.xinfo_consumers(EMAIL.stream, GROUP)]
    assert names == [b"worker-busy"]
