"""The gate that lets a suspect job run alone in its process, and what a crash is
charged to."""

from __future__ import annotations

import asyncio

from sluice.runtime import Client, Event, Job, function
from sluice.runtime.health import RedisHealth
from sluice.runtime.lifecycle import stop_task
from sluice.runtime.registry import Registry
from sluice.runtime.worker.intake import calls, take_in
from sluice.runtime.worker.isolation import Gate
from sluice.runtime.worker.lanes import Lanes
from sluice.runtime.worker.partition import Partition
from sluice.runtime.worker.recorder import Recorder
from sluice.runtime.worker.settler import Settler
from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.consume import Delivery, ensure_group, read
from sluice.streams.keys import PartitionKeys
from sluice.streams.reclaim import reclaim
from sluice.streams.settle import Dead
from sluice.streams.suspects import mark_started
from tests.redis_server import RedisServer
from tests.sample_functions import Task


async def test_a_suspect_waits_for_running_calls_and_holds_new_ones_back() -> None:
    gate = Gate()
    order: list[str] = []
    release_shared = asyncio.Event()
    release_alone = asyncio.Event()

    async def shared(name: str, until: asyncio.Event | None = None) -> None:
        await gate.enter(False)
        order.append(f"{name} in")
        if until is not None:
            await until.wait()
        order.append(f"{name} out")
        gate.leave(False)

    async def alone() -> None:
        await gate.enter(True)
        order.append("suspect in")
        await release_alone.wait()
        order.append("suspect out")
        gate.leave(True)

    first = asyncio.create_task(shared("first", release_shared))
    await asyncio.sleep(0)
    suspect = asyncio.create_task(alone())
    await asyncio.sleep(0)
    assert gate.closed()
    later = asyncio.create_task(shared("later"))
    await asyncio.sleep(0)
    assert order == ["first in"]
    release_shared.set()
    await first
    await asyncio.sleep(0)
    assert order == ["first in", "first out", "suspect in"]
    release_alone.set()
    await asyncio.gather(suspect, later)
    assert order[-3:] == ["suspect out", "later in", "later out"]
    assert not gate.closed()
    assert gate.running == 0


async def test_a_suspect_cancelled_at_the_gate_opens_it_again() -> None:
    gate = Gate()
    await gate.enter(False)
    waiting = asyncio.create_task(gate.enter(True))
    await asyncio.sleep(0)
    assert gate.closed()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not gate.closed()
    gate.leave(False)
    await asyncio.wait_for(gate.enter(True), 1)
    gate.leave(True)


def _delivery(entry_id: str, deliveries: int, starts: int) -> Delivery:
    envelope = env.Envelope(f"job-{entry_id}", "suspect", "ws", env.encode_payload(Task(1)), 0)
    return Delivery(entry_id, env.encode(envelope), deliveries, "ws", starts)


def test_a_job_only_held_at_crashes_is_not_charged() -> None:
    # Taken over twice, never recorded to start: held by the dead workers, not run
    # there. Even with one delivery allowed it runs, as a suspect; a job recorded
    # running at a crash is charged that crash and its first, unrecorded run.
    fn = function("suspect", input=Task, max_deliveries=1)(_ignore)
    intake = take_in(fn, [_delivery("1-0", 3, 0), _delivery("2-0", 3, 1)], (), env.now_ms())
    assert [(r.entry_id, r.suspect, r.alone) for r in intake.ready] == [("1-0", True, False)]
    assert [(o.entry_id, type(o)) for o in intake.outcomes] == [("2-0", Dead)]
    fn = function("suspect", input=Task, max_deliveries=3)(_ignore)
    intake = take_in(fn, [_delivery("1-0", 3, 1)], (), env.now_ms())
    assert [(r.entry_id, r.alone) for r in intake.ready] == [("1-0", True)]


async def _ignore(job: Job[Task]) -> None:
    pass


async def test_a_suspect_whose_handler_returned_is_not_charged_before_it_settles(
    redis: Redis, shared_server: RedisServer
) -> None:
    # Two jobs of a crashed worker, both running at a crash before (a start each
    # recorded): they run alone, one after the other. The second is poison: its
    # crash, right as it starts, must not be charged to the first, whose call ended
    # but whose outcome has not settled (the settler here never runs).
    seen: dict[str, int] = {}
    keys = PartitionKeys("suspect", 0)

    async def run(job: Job[Task]) -> None:
        if job.data.n == 2:
            # The poison's start: where a crash would strike.
            for eid in first, poison:
                seen[eid] = int(await redis.hget(keys.suspects, eid) or 0)

    fn = function("suspect", input=Task, visibility_timeout_s=60)(run)
    await Client(redis, Registry([fn])).publish_many(
        "suspect", [Event(workspace="ws", data={"n": n}) for n in (1, 2)]
    )
    await ensure_group(redis, keys)
    assert len(await read(redis, keys, "crashed", 10, 100)) == 2
    taken = (await reclaim(redis, keys, "me", 0, "0-0", 10, stale_ms=3_600_000)).deliveries
    await mark_started(redis, keys, [d.entry_id for d in taken])
    taken = (await reclaim(redis, keys, "me", 0, "0-0", 10, stale_ms=3_600_000)).deliveries
    first, poison = (d.entry_id for d in taken)
    part = Partition(redis, fn, 0, "me", RedisHealth(shared_server.url))
    intake = take_in(fn, taken, (), env.now_ms())
    part.held.update(intake.taken)
    part.suspects.update(eid for eid, _ in intake.taken)
    recorder = Recorder()
    settler = Settler(part, recorder)
    lanes = Lanes(part, Gate(), settler, recorder)
    watchdog = lanes.start()
    try:
        lanes.push(calls(fn, intake.ready, intake.read_ms))
        while len(settler.outbox) < 2:  # noqa: ASYNC110 - the lanes set no event of their own
            await asyncio.sleep(0.01)
    finally:
        lanes.close()
        await asyncio.gather(*lanes.tasks)
        await stop_task(watchdog)
    # The first's start ended with its call; the poison's own start is counted.
    assert (seen[first], seen[poison]) == (1, 2)
