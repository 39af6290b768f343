"""Delayed jobs: lateness against the due time, Redis memory per delayed job, promotion rate."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.functions import Ping
from bench.worker import start_worker, stop, until_completed
from sluice.runtime import Client, Event
from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.delayed import promote_due
from sluice.streams.keys import PartitionKeys

CHUNK = 1000
# Far enough ahead that no backlog job falls due during a run.
FAR_MS = 30 * 86_400_000
BODY = "x" * 200


async def publish_far_future(client: Client, function: str, n: int) -> None:
    """`n` delayed jobs with 200-byte bodies, due in 30 days."""
    for offset in range(0, n, CHUNK):
        events = [
            Event(workspace=f"ws{i % 100}", data=Ping(sent_ns=0, body=BODY), delay_ms=FAR_MS)
            for i in range(offset, min(n, offset + CHUNK))
        ]
        await client.publish_many(function, events)


async def delayed_bytes_per_job(client: Client, redis: Redis, function: str, n: int) -> float:
    """Publish `n` jobs due in 30 days; return the Redis memory each costs beyond its
    payload (the msgpack of its input)."""
    before: int = (await redis.info("memory"))["used_memory"]
    await publish_far_future(client, function, n)
    after: int = (await redis.info("memory"))["used_memory"]
    payload = len(env.encode_payload(Ping(sent_ns=0, body=BODY)))
    return (after - before) / n - payload


async def promote_rate(client: Client, redis: Redis, n: int) -> float:
    """Jobs/s that promote calls of 1,000 move from the delayed set to the stream."""
    keys = PartitionKeys("noop", 0)
    await publish_far_future(client, "noop", n)
    # All due at once: scores times 0, instead of waiting 30 days.
    await redis.zunionstore(keys.delayed, {keys.delayed: 0})
    start = time.perf_counter()
    moved = 0
    while (step := (await promote_due(redis, keys, 1000)).moved) > 0:
        moved += step
    return moved / (time.perf_counter() - start)


async def lateness(client: Client, redis: Redis, url: str, n: int, over_s: float) -> list[float]:
    """Handler start minus due time (ms) for `n` jobs due evenly over `over_s`.

    One worker process with an embedded scheduler; whatever else waits in the
    delayed set (a backlog) stays there.
    """
    keys = PartitionKeys("timed", 0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lateness"
        worker = start_worker(url, "timed", {"LATENCY_FILE": str(path)}, scheduler=True)
        try:
            await client.publish("timed", workspace="warm", data=Ping(sent_ns=0))
            await until_completed(redis, keys, 1, 0.01)
            first_ns = time.time_ns() + 1_000_000_000
            for offset in range(0, n, CHUNK):
                events = []
                for i in range(offset, min(n, offset + CHUNK)):
                    due_ns = first_ns + int(i * over_s * 1e9 / n)
                    run_at = _rfc3339(due_ns)
                    # The handler records its start minus `sent_ns`: here the due time.
                    events.append(Event(workspace=f"ws{i % 10}", data=Ping(due_ns), run_at=run_at))
                await client.publish_many("timed", events)
            await asyncio.sleep(over_s)
            await until_completed(redis, keys, n + 1, 0.05)
        finally:
            stop(worker)
        return [int(line) / 1e6 for line in path.read_text().split()]


def _rfc3339(epoch_ns: int) -> str:
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns:09d}+00:00"
