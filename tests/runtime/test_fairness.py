"""Fairness and priorities through a worker: a campaign of 20,000 jobs does not hold
back another workspace's job, nor a high job of its own, nor starve its low jobs.

"fair-tasks" handles batches of 50, and a workspace's share of the stream is one
batch. What goes before a newcomer is that share plus what the worker already
holds (its reads run ahead of its calls), a few batches, never the campaign.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sluice.runtime import Client, Event
from sluice.runtime.client.publish import Priority
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.conftest import Target
from tests.runtime.helpers import SAMPLE, wait_until, worker_in_process


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


CAMPAIGN = 20_000
BATCH = 50
# Jobs the worker may hold read ahead of its calls (2 batches being read and
# settled, 2 lanes of one batch), plus the share in the stream.
AHEAD = 4 * BATCH + BATCH


def ledger_ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


async def campaign(client: Client, workspace: str) -> None:
    for start in range(0, CAMPAIGN, 5000):
        await client.publish_many(
            "fair-tasks",
            [Event(workspace=workspace, data={"n": i}) for i in range(start, start + 5000)],
        )


async def newcomer_waits(
    redis: Redis, url: str, ledger: Path, workspace: str, priority: Priority
) -> tuple[int, float]:
    """Start the worker on the campaign, publish one job when it is under way;
    returns how many campaign jobs ran meanwhile and the wait in ms."""
    client = Client(redis, load(SAMPLE))
    await campaign(client, "campaign")
    async with worker_in_process(url, "fair-tasks"):

        async def under_way() -> bool:
            return len(ledger_ids(ledger)) >= 1000

        await wait_until(under_way, what="the campaign under way")
        before = len(ledger_ids(ledger))
        sent = time.perf_counter()
        receipt = await client.publish(
            "fair-tasks", workspace=workspace, data={"n": -1}, priority=priority
        )

        async def handled() -> bool:
            return receipt.id in ledger_ids(ledger)

        await wait_until(handled, what="the newcomer handled")
        waited_ms = (time.perf_counter() - sent) * 1000
        ids = ledger_ids(ledger)
    ran = ids.index(receipt.id) - before
    assert len(ids) < CAMPAIGN / 2, "the campaign had finished: nothing was shown"
    return ran, waited_ms


@pytest.mark.parametrize(
    ("workspace", "priority", "who"),
    [
        # Fairness: another workspace's job is not held back by the campaign.
        ("small", "normal", "the small workspace's job"),
        # Priority: a high job of the campaign's own workspace goes before it.
        ("campaign", "high", "the campaign's high job"),
    ],
)
async def test_a_newcomer_waits_for_a_few_batches_not_the_campaign(
    redis: Redis,
    long_target: Target,
    ledger: Path,
    workspace: str,
    priority: Priority,
    who: str,
) -> None:
    ran, waited_ms = await newcomer_waits(redis, long_target.url, ledger, workspace, priority)
    print(f"\n{who} waited {waited_ms:.0f} ms, {ran} campaign jobs")
    assert ran <= AHEAD


async def test_low_jobs_progress_while_normal_ones_keep_arriving(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    low_jobs = 20
    client = Client(redis, load(SAMPLE))
    await campaign(client, "campaign")
    lows = await client.publish_many(
        "fair-tasks",
        [Event(workspace="campaign", data={"n": i}, priority="low") for i in range(low_jobs)],
    )
    stop = asyncio.Event()

    async def keep_publishing() -> None:
        while not stop.is_set():
            await client.publish_many(
                "fair-tasks", [Event(workspace="campaign", data={"n": i}) for i in range(200)]
            )
            await asyncio.sleep(0)

    publisher = asyncio.create_task(keep_publishing())
    try:
        async with worker_in_process(long_target.url, "fair-tasks"):

            async def lows_done() -> bool:
                return {r.id for r in lows} <= set(ledger_ids(ledger))

            await wait_until(lows_done, what="the low jobs handled")
    finally:
        stop.set()
        await publisher
    ids = ledger_ids(ledger)
    last_low = max(ids.index(r.id) for r in lows)
    print(f"\npriority: {low_jobs} low jobs done after {last_low - low_jobs + 1} normal ones")
    # Not after the campaign: each refill of a batch gave low jobs a turn in five.
    assert last_low < AHEAD + low_jobs
