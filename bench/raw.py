"""The raw Redis limit Sluice's rates are set beside: pipelined XADD, and XREADGROUP
+ XACK, of entries the size of a job's envelope, on one stream."""

from __future__ import annotations

import time
from typing import Any

from bench.functions import Ping
from sluice.streams import envelope as env
from sluice.streams.connection import Redis

BATCH = 100
CHUNK = 1000


def sample_envelope(i: int) -> bytes:
    payload = env.encode_payload(Ping(sent_ns=time.time_ns(), body="x" * 40))
    return env.encode(env.Envelope(env.new_job_id(), "raw", f"ws{i % 10}", payload, env.now_ms()))


async def raw_publish_rate(redis: Redis, n: int) -> float:
    """Pipelined XADD of envelope-sized entries, CHUNK per round trip."""
    entries = [sample_envelope(i) for i in range(n)]
    start = time.perf_counter()
    for offset in range(0, n, CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for data in entries[offset : offset + CHUNK]:
                pipe.xadd("raw", {"e": data})
            await pipe.execute()
    return n / (time.perf_counter() - start)


async def raw_drain_rate(redis: Redis, n: int) -> float:
    """XREADGROUP COUNT BATCH + one XACK per batch, until the stream is drained."""
    await redis.xgroup_create("raw", "g", id="0")
    start = time.perf_counter()
    done = 0
    while done < n:
        reply: Any = await redis.xreadgroup("g", "c", {"raw": ">"}, count=BATCH, block=1000)
        # The reply as sent (streams.connection), as the worker reads it.
        ids = [eid for eid, _ in reply[b"raw"]]
        await redis.xack("raw", "g", *ids)
        done += len(ids)
    return n / (time.perf_counter() - start)
