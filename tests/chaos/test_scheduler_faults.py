"""A scheduler across a Redis restart: jobs survive, promotion resumes, wake-ups arrive.

On a single server of the test's own (stopped and started); a cluster's primary
killed and restarted under workers and a scheduler is in test_cluster_faults.
"""

from __future__ import annotations

from pathlib import Path

from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.streams.connection import connect
from tests.conftest import settings_for
from tests.redis_server import RedisServer
from tests.runtime.helpers import (
    SAMPLE,
    read_ledger,
    total_counts,
    wait_completed,
    wait_unavailable,
    wait_until,
    worker_in_process,
)


async def test_redis_restarted_under_a_running_scheduler(server: RedisServer, ledger: Path) -> None:
    redis = connect(settings_for(server.url))
    client = Client(redis, load(SAMPLE))
    try:
        events = [Event(workspace="ws", data={"n": i}, delay_ms=200 + i * 8) for i in range(300)]
        published = {r.id for r in await client.publish_many("tasks", events)}
        # Due in a minute: with a 30 s re-check, only a wake-up brings a sooner job.
        await client.publish("tasks", workspace="ws", data={"n": -1}, delay_ms=60_000)
        async with worker_in_process(server.url, "tasks", scheduler=True, recheck_s=30) as health:

            async def some_promoted() -> bool:
                return (await total_counts(redis, "tasks")).promoted >= 50

            await wait_until(some_promoted, what="promotion before the restart")
            server.stop()
            await wait_unavailable(health)
            server.start()
            await wait_completed(redis, "tasks", 300, timeout_s=60)
            # The scheduler sleeps towards the minute-away job; a new sooner one
            # must wake it through the re-subscribed channel.
            late = await client.publish("tasks", workspace="ws", data={"n": 999}, delay_ms=300)
            await wait_completed(redis, "tasks", 301, timeout_s=10)
    finally:
        await redis.aclose()
    handled = read_ledger(ledger)
    assert set(handled) == published | {late.id}
    print(f"Redis restart under a scheduler: {sum(c - 1 for c in handled.values())} jobs ran twice")
