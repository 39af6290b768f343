"""What happens to a job whose handler fails, hangs, or kills its worker; and bad input."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sluice.runtime import (
    Client,
    DeadLetters,
    Event,
    InvalidPayload,
    InvalidSchedule,
    Job,
    PayloadTooLarge,
    UnknownFunction,
    function,
)
from sluice.runtime.errors import InvalidPriority
from sluice.runtime.registry import Registry, load
from sluice.streams.connection import Redis
from sluice.streams.deadletter import dead_letters
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys
from tests.conftest import Target
from tests.runtime.helpers import (
    SAMPLE,
    blocked_readers,
    keys_for,
    read_ledger,
    start_worker,
    total_counts,
    wait_until,
    worker_in_process,
)
from tests.sample_functions import Task


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


TASKS = PartitionKeys("tasks", 0)


@pytest.fixture
def client(redis: Redis) -> Client:
    return Client(redis, load(SAMPLE))


async def test_a_raising_or_hanging_handler_with_one_attempt_is_dead_with_the_error(
    target: Target,
) -> None:
    redis = target.redis
    client = Client(redis, load(SAMPLE))
    raised = await client.publish("tasks", workspace="ws", data={"n": 1, "mode": "raise"})
    hung = await client.publish("tasks", workspace="ws", data={"n": 2, "mode": "hang"})
    fine = await client.publish("tasks", workspace="ws", data={"n": 3})
    async with worker_in_process(target.url, "tasks"):

        async def settled() -> bool:
            c = await total_counts(redis, "tasks")
            return c.dead == 2 and c.completed == 1

        await wait_until(settled, what="two failures and one completion")
    keys = keys_for(redis, "tasks", "ws")
    records = {r.id: await get_job(redis, keys, r.id) for r in (raised, hung, fine)}
    failed, timed_out, done = (records[r.id] for r in (raised, hung, fine))
    assert failed is not None
    assert timed_out is not None
    assert done is not None
    assert (failed.state, failed.error) == ("dead", "ValueError: task 1 refused")
    assert (timed_out.state, timed_out.error) == ("dead", "timed out after 2 s")
    assert (done.state, done.error, done.attempts) == ("completed", "", 1)


async def test_a_batch_handler_fails_only_the_jobs_it_names(target: Target, ledger: Path) -> None:
    redis = target.redis
    client = Client(redis, load(SAMPLE))
    events = [
        Event(workspace=f"ws{i % 3}", data={"n": i, "mode": "raise" if i % 10 == 0 else "ok"})
        for i in range(100)
    ]
    receipts = await client.publish_many("batch-tasks", events)
    async with worker_in_process(target.url, "batch-tasks"):

        async def settled() -> bool:
            c = await total_counts(redis, "batch-tasks", partitions=2)
            return c.completed + c.dead == 100

        await wait_until(settled, what="100 settlements")
    final = await total_counts(redis, "batch-tasks", partitions=2)
    assert (final.completed, final.failed, final.dead) == (90, 10, 10)
    handled = read_ledger(ledger)
    assert len(handled) == 90
    assert max(handled.values()) == 1
    for event, receipt in zip(events, receipts, strict=True):
        keys = keys_for(redis, "batch-tasks", event.workspace)
        record = await get_job(redis, keys, receipt.id)
        assert record is not None
        assert record.state == ("dead" if event.data["mode"] == "raise" else "completed")


async def restart_until_settled(
    url: str, ledger: Path, settled: Callable[[], Awaitable[bool]], most: int
) -> int:
    """Run `tasks` workers one after another, each until it dies (SIGKILLed by a
    poison job) or `settled`; returns how many died, failing past `most`."""
    deaths = 0
    while True:
        worker = start_worker(url, ledger, functions="tasks")

        async def over(worker: subprocess.Popen[bytes] = worker) -> bool:
            return worker.poll() is not None or await settled()

        await wait_until(over, what="the worker to die or the jobs to settle")
        if worker.poll() is None:
            worker.terminate()
            assert worker.wait(timeout=10) == 0
            return deaths
        assert worker.returncode == -signal.SIGKILL
        deaths += 1
        assert deaths <= most, "the poison kept killing workers past max_deliveries"


async def test_a_job_that_kills_its_worker_every_time_is_dead_lettered(
    redis: Redis, long_target: Target, client: Client, tmp_path: Path
) -> None:
    poison = await client.publish("tasks", workspace="ws", data={"n": 1, "mode": "die"})

    async def dead() -> bool:
        return (await total_counts(redis, "tasks")).dead == 1

    assert await restart_until_settled(long_target.url, tmp_path / "ledger", dead, 3) == 3
    record = await get_job(redis, TASKS, poison.id)
    assert record is not None
    assert record.state == "dead"
    assert "max_deliveries=3" in record.error
    (letter,) = await dead_letters(redis, TASKS)
    assert letter.envelope.id == poison.id


async def test_a_job_that_kills_its_worker_takes_no_neighbour_with_it(
    redis: Redis, long_target: Target, client: Client, tmp_path: Path
) -> None:
    # Twenty jobs held by the same workers as the poison, eight run at a time:
    # each crash hits every job the process held, but only the poison started
    # every time, so only the poison is dead.
    events = [Event(workspace="ws", data={"n": n, "sleep_ms": 200}) for n in range(21)]
    events[2] = Event(workspace="ws", data={"n": 2, "mode": "die"})
    receipts = await client.publish_many("tasks", events)
    ledger = tmp_path / "ledger"

    async def settled() -> bool:
        c = await total_counts(redis, "tasks")
        return c.dead + c.completed == len(events)

    await restart_until_settled(long_target.url, ledger, settled, 3)
    final = await total_counts(redis, "tasks")
    assert (final.dead, final.completed) == (1, 20)
    (letter,) = await dead_letters(redis, TASKS)
    assert letter.envelope.id == receipts[2].id
    assert set(read_ledger(ledger)) == {r.id for i, r in enumerate(receipts) if i != 2}


async def test_invalid_data_names_the_field_and_writes_nothing(
    redis: Redis, client: Client
) -> None:
    events = [Event(workspace="ws", data={"n": 1}), Event(workspace="ws", data={"n": "x"})]
    with pytest.raises(InvalidPayload) as caught:
        await client.publish_many("tasks", events)
    assert caught.value.path == "$.n"
    assert caught.value.index == 1
    assert "Expected `int`, got `str`" in str(caught.value)
    with pytest.raises(InvalidPayload) as missing:
        await client.publish("tasks", workspace="ws", data={"mode": "ok"})
    assert "missing required field `n`" in str(missing.value)
    # JSON and Python integers have no bound; msgpack's stop at 64 bits.
    with pytest.raises(InvalidPayload, match="beyond 64 bits") as huge:
        await client.publish("tasks", workspace="ws", data={"n": 2**64})
    assert huge.value.path == "$.n"
    assert await redis.dbsize() == 0


async def test_unknown_targets_bad_names_and_oversized_payloads_write_nothing(
    redis: Redis, client: Client
) -> None:
    with pytest.raises(UnknownFunction, match="no function handles 'nope'"):
        await client.publish("nope", workspace="ws", data={"n": 1})
    with pytest.raises(PayloadTooLarge, match="limit is 262144"):
        await client.publish("tasks", workspace="ws", data={"n": 1, "note": "x" * 300_000})
    with pytest.raises(ValueError, match="workspace"):
        await client.publish("tasks", workspace="has space", data={"n": 1})
    with pytest.raises(ValueError, match="job id"):
        await client.publish("tasks", workspace="ws", data={"n": 1}, id="{bad}")
    for wrong in ("urgent", ["high"]):
        with pytest.raises(InvalidPriority, match="event 1: priority must be high, normal or low"):
            await client.publish_many(
                "tasks",
                [
                    Event(workspace="ws", data={"n": 1}),
                    Event(workspace="ws", data={"n": 2}, priority=wrong),  # type: ignore[arg-type]
                ],
            )
    assert await redis.dbsize() == 0


async def test_an_explicit_id_publishes_once(redis: Redis, client: Client) -> None:
    first = await client.publish("tasks", workspace="ws", data={"n": 1}, id="order-42")
    again = await client.publish("tasks", workspace="ws", data={"n": 2}, id="order-42")
    assert (first.id, first.duplicate) == ("order-42", False)
    assert (again.id, again.duplicate) == ("order-42", True)
    assert await redis.xlen(TASKS.stream) == 1


async def test_heartbeats_keep_a_job_running_past_its_visibility_timeout(
    redis: Redis,
    long_target: Target,
    client: Client,
    ledger: Path,
) -> None:
    # long-tasks: visibility timeout 1 s, two lanes a worker; six jobs of 1.2 s
    # while a second worker looks for idle entries every 0.3 s. A worker holds
    # several at once, running or waiting for a lane: only heartbeats of every
    # held entry keep each from being taken and run twice.
    receipts = [
        await client.publish("long-tasks", workspace="ws", data={"n": n, "sleep_ms": 1200})
        for n in range(6)
    ]
    async with (
        worker_in_process(long_target.url, "long-tasks"),
        worker_in_process(long_target.url, "long-tasks"),
    ):

        async def completed() -> bool:
            return (await total_counts(redis, "long-tasks")).completed == 6

        await wait_until(completed, what="the long jobs to complete")
    assert read_ledger(ledger) == {r.id: 1 for r in receipts}
    final = await total_counts(redis, "long-tasks")
    assert final.fenced == 0


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ({"delay_ms": -1}, "delay_ms must not be negative"),
        ({"delay_ms": 1.5}, "delay_ms must be an integer"),
        ({"run_at": "tomorrow"}, "is not an RFC 3339 date-time"),
        ({"run_at": "2030-01-01T09:00:00"}, "has no time zone"),
        ({"delay_ms": 5, "run_at": "2030-01-01T09:00:00Z"}, "not both"),
    ],
)
async def test_a_malformed_schedule_is_refused_and_writes_nothing(
    redis: Redis, client: Client, timing: dict[str, Any], message: str
) -> None:
    events = [Event(workspace="ws", data={"n": 1}), Event(workspace="ws", data={"n": 2}, **timing)]
    with pytest.raises(InvalidSchedule, match=message):
        await client.publish_many("tasks", events)
    assert await redis.dbsize() == 0


async def test_run_at_in_the_past_runs_now_and_in_the_future_waits(
    redis: Redis, client: Client
) -> None:
    past = await client.publish("tasks", workspace="ws", data={"n": 1}, run_at="2001-01-01T00:00Z")
    later = await client.publish(
        "tasks", workspace="ws", data={"n": 2}, run_at=datetime.now(UTC) + timedelta(hours=1)
    )
    now, waiting = await get_job(redis, TASKS, past.id), await get_job(redis, TASKS, later.id)
    assert now is not None
    assert waiting is not None
    assert (now.state, waiting.state) == ("queued", "delayed")


async def test_a_batching_window_waits_to_fill_the_batch(
    redis: Redis,
    long_target: Target,
    client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches = tmp_path / "batches"
    monkeypatch.setenv("BATCHES_FILE", str(batches))
    async with worker_in_process(long_target.url, "window-tasks"):

        async def ready() -> bool:
            return await blocked_readers(redis) >= 1

        await wait_until(ready, what="the worker to wait for jobs")
        first = [Event(workspace="ws", data={"n": i}) for i in range(5)]
        await client.publish_many("window-tasks", first)

        async def first_read() -> bool:
            return (await total_counts(redis, "window-tasks")).active == 5

        # Read, but held back: the window is open.
        await wait_until(first_read, what="the first five to be read")
        second = [Event(workspace="ws", data={"n": i}) for i in range(5, 10)]
        await client.publish_many("window-tasks", second)

        async def all_done() -> bool:
            return (await total_counts(redis, "window-tasks")).completed == 10

        await wait_until(all_done, what="ten jobs")
    assert batches.read_text().split() == ["10"]


async def test_an_undecodable_entry_is_dead_lettered_and_can_be_read_and_purged(
    redis: Redis, long_target: Target, client: Client
) -> None:
    await redis.xgroup_create(TASKS.stream, "workers", id="0", mkstream=True)
    await redis.xadd(TASKS.stream, {"e": b"\\xc1 not msgpack"})
    async with worker_in_process(long_target.url, "tasks"):

        async def dead() -> bool:
            return (await total_counts(redis, "tasks")).dead == 1

        await wait_until(dead, what="the corrupt entry to be dead-lettered")
    letters = DeadLetters(redis, load(SAMPLE))
    (letter,) = await letters.read("tasks")
    assert letter.envelope.id.startswith("corrupt-")
    assert "undecodable envelope" in letter.reason
    assert await letters.purge("tasks") == 1


async def test_a_handler_busy_talking_to_redis_still_times_out(
    redis: Redis, long_target: Target, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every ping goes through redis-py's wait_for, which on Python 3.11 can swallow
    # the watchdog's cancel; the watchdog must cancel again until one lands.
    monkeypatch.setenv("REDIS_URL", long_target.url)
    pings = [
        await client.publish("tasks", workspace="ws", data={"n": i, "mode": "ping"})
        for i in range(4)
    ]
    async with worker_in_process(long_target.url, "tasks"):

        async def all_dead() -> bool:
            return (await total_counts(redis, "tasks")).dead == 4

        await wait_until(all_dead, timeout_s=20, what="four pinging handlers to time out")
    for receipt in pings:
        record = await get_job(redis, TASKS, receipt.id)
        assert record is not None
        assert (record.state, record.error) == ("dead", "timed out after 2 s")


async def test_a_fanned_out_publish_is_a_duplicate_only_when_every_copy_existed(
    redis: Redis,
) -> None:
    async def handler(job: Job[Task]) -> None:
        del job

    audit = function("audit", input=Task, topics=("task.created",))(handler)
    notify = function("notify", input=Task, topics=("task.created",))(handler)
    both = Client(redis, Registry([audit, notify]))
    only_audit = Client(redis, Registry([audit]))
    first = await only_audit.publish("task.created", workspace="ws", data={"n": 1}, id="t-1")
    assert (first.functions, first.duplicate) == (("audit",), False)
    # notify's copy is new: not a duplicate, though audit's existed.
    fanned = await both.publish("task.created", workspace="ws", data={"n": 1}, id="t-1")
    assert (fanned.functions, fanned.duplicate) == (("audit", "notify"), False)
    again = await both.publish("task.created", workspace="ws", data={"n": 1}, id="t-1")
    assert again.duplicate
