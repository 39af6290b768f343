"""Jobs by id through the Python API: get, cancel, reschedule, and the errors that refuse."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.runtime import Client, JobNotFound, Jobs, Retry, WrongJobState
from sluice.runtime.client.timing import HORIZON
from sluice.runtime.errors import InvalidCursor, InvalidSchedule, SluiceError
from sluice.runtime.registry import load
from sluice.streams import envelope as env
from sluice.streams.connection import Redis, RedisSettings, connect, is_cluster
from sluice.streams.listing import Listable
from sluice.streams.publish import Outgoing, publish
from tests.conftest import Target
from tests.runtime.helpers import (
    SAMPLE,
    keys_for,
    read_ledger,
    total_counts,
    wait_until,
    worker_in_process,
)


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


HOUR = 3_600_000


async def test_cancel_and_reschedule_find_the_partition_and_refuse_the_wrong_state(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    later = [
        await client.publish("batch-tasks", workspace=f"ws{i}", data={"n": i}, delay_ms=3_600_000)
        for i in range(4)
    ]
    queued = await client.publish("batch-tasks", workspace="ws9", data={"n": 9})
    # Two partitions: found without naming the workspace.
    await jobs.cancel("batch-tasks", later[0].id)
    record = await jobs.get("batch-tasks", later[0].id)
    assert record is not None
    assert record.state == "cancelled"
    await jobs.cancel("batch-tasks", later[0].id)  # again: a no-op, so callers may retry
    with pytest.raises(WrongJobState, match="it is queued"):
        await jobs.reschedule("batch-tasks", queued.id, delay_ms=10)
    with pytest.raises(JobNotFound):
        await jobs.cancel("batch-tasks", "no-such-job")
    # One moves to now, one to a time in the past: both run; the last stays.
    await jobs.reschedule("batch-tasks", later[1].id, workspace="ws1")
    await jobs.reschedule("batch-tasks", later[2].id, run_at=datetime.now(UTC) - timedelta(days=1))
    async with worker_in_process(long_target.url, "batch-tasks", scheduler=True):

        async def three_done() -> bool:
            return (await total_counts(redis, "batch-tasks", partitions=2)).completed == 3

        await wait_until(three_done, what="the queued and two rescheduled jobs")
    assert set(read_ledger(ledger)) == {queued.id, later[1].id, later[2].id}
    with pytest.raises(WrongJobState, match="it is completed"):
        await jobs.cancel("batch-tasks", queued.id)
    counts = await jobs.counts("batch-tasks")
    assert (counts.delayed, counts.cancelled, counts.completed) == (1, 1, 3)


async def test_a_running_job_cannot_be_cancelled(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    running = await client.publish(
        "slow-tasks", workspace="ws", data={"n": 1, "mode": "slow", "sleep_ms": 1_000}
    )
    async with worker_in_process(long_target.url, "slow-tasks"):

        async def active() -> bool:
            record = await jobs.get("slow-tasks", running.id)
            return record is not None and record.state == "active"

        await wait_until(active, what="the job to start")
        with pytest.raises(WrongJobState, match="a worker is running it"):
            await jobs.cancel("slow-tasks", running.id)
    assert read_ledger(ledger) == {running.id: 1}


async def test_a_job_picked_up_after_its_expiry_is_marked_expired_not_run(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    now = datetime.now(UTC)
    stale = await client.publish(
        "tasks", workspace="ws", data={"n": 1}, expires_at=now - timedelta(minutes=5)
    )
    # Due after it expires: promoted on time, then found stale.
    late = await client.publish(
        "tasks",
        workspace="ws",
        data={"n": 2},
        delay_ms=300,
        expires_at=(now + timedelta(milliseconds=100)).isoformat(),
    )
    fresh = await client.publish(
        "tasks", workspace="ws", data={"n": 3}, expires_at=now + timedelta(hours=1)
    )
    async with worker_in_process(long_target.url, "tasks", scheduler=True):

        async def settled() -> bool:
            c = await jobs.counts("tasks")
            return (c.expired, c.completed) == (2, 1)

        await wait_until(settled, what="two expired jobs and one completed")
    assert read_ledger(ledger) == {fresh.id: 1}
    for receipt in (stale, late):
        record = await jobs.get("tasks", receipt.id)
        assert record is not None
        assert (record.state, record.attempts) == ("expired", 0)


async def test_a_cancelled_booking_cancels_its_reminders_in_every_function(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    start = datetime.now(UTC) + timedelta(days=2)
    reminders = {}
    for name, before in (("24h", timedelta(hours=24)), ("1h", timedelta(hours=1))):
        reminders[name] = await client.publish(
            "tasks",
            workspace="acme",
            data={"n": 1},
            run_at=start - before,
            key=f"booking:123:reminder-{name}",
            tags=["booking:123"],
        )
    # The booking moves: publishing the key again replaces the reminder, not adds one.
    moved = await client.publish(
        "tasks",
        workspace="acme",
        data={"n": 2},
        run_at=start + timedelta(hours=3) - timedelta(hours=1),
        key="booking:123:reminder-1h",
        tags=["booking:123"],
    )
    assert await jobs.get("tasks", reminders["1h"].id) is None
    record = await jobs.get("tasks", moved.id)
    assert record is not None
    assert (record.state, record.key, record.tags) == (
        "delayed",
        "booking:123:reminder-1h",
        ("booking:123",),
    )
    email = await client.publish(
        "retry-tasks", workspace="acme", data={"n": 3}, delay_ms=60_000, tags=["booking:123"]
    )
    other = await client.publish(
        "tasks", workspace="acme", data={"n": 4}, delay_ms=60_000, tags=["booking:999"]
    )
    # One reminder by its key, then the rest of the booking by its tag.
    assert await jobs.cancel_key("tasks", "booking:123:reminder-24h", workspace="acme") == (
        reminders["24h"].id
    )
    result = await jobs.cancel_tag("booking:123", workspace="acme")
    assert sorted(result.cancelled) == sorted([moved.id, email.id])
    assert result.running == ()
    with pytest.raises(JobNotFound):
        await jobs.cancel_key("tasks", "booking:123:reminder-1h", workspace="acme")
    counts = await jobs.counts("tasks")
    assert (counts.delayed, counts.cancelled) == (1, 2)
    remaining = await jobs.get("tasks", other.id)
    assert remaining is not None
    assert remaining.state == "delayed"


async def test_a_handlers_return_value_is_the_jobs_result(
    redis: Redis, long_target: Target
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    with_result = await client.publish("tasks", workspace="ws", data={"n": 7, "note": "sent"})
    without = await client.publish("tasks", workspace="ws", data={"n": 8})
    async with worker_in_process(long_target.url, "tasks"):

        async def both_done() -> bool:
            return (await jobs.counts("tasks")).completed == 2

        await wait_until(both_done, what="two completed jobs")
    record = await jobs.get("tasks", with_result.id)
    assert record is not None
    assert (record.state, record.result, record.error) == (
        "completed",
        {"note": "sent", "n": 7},
        "",
    )
    plain = await jobs.get("tasks", without.id)
    assert plain is not None
    assert plain.result is None


async def all_pages(jobs: Jobs, function: str, state: Listable, **filters: str) -> list[str]:
    ids: list[str] = []
    cursor = ""
    while True:
        page = await jobs.page(function, state, cursor=cursor, limit=2, **filters)
        ids += [j.id for j in page.jobs]
        if not page.cursor:
            return ids
        cursor = page.cursor


async def test_jobs_are_listed_by_state_and_workspace_page_by_page(
    redis: Redis, long_target: Target
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    later = [
        await client.publish(
            "batch-tasks", workspace=f"ws{i % 3}", data={"n": i}, delay_ms=60_000 + i
        )
        for i in range(7)
    ]
    now = [
        await client.publish("batch-tasks", workspace=f"ws{i % 3}", data={"n": i}) for i in range(5)
    ]
    listed = await all_pages(jobs, "batch-tasks", "delayed")
    assert sorted(listed) == sorted(r.id for r in later)
    assert sorted(await all_pages(jobs, "batch-tasks", "waiting")) == sorted(r.id for r in now)
    ws1 = await all_pages(jobs, "batch-tasks", "delayed", workspace="ws1")
    assert sorted(ws1) == sorted(r.id for i, r in enumerate(later) if i % 3 == 1)
    async with worker_in_process(long_target.url, "batch-tasks"):

        async def done() -> bool:
            return (await jobs.counts("batch-tasks")).completed == 5

        await wait_until(done, what="the five queued jobs")
    assert sorted(await all_pages(jobs, "batch-tasks", "completed")) == sorted(r.id for r in now)
    assert await all_pages(jobs, "batch-tasks", "waiting") == []


async def test_an_explicit_id_is_per_workspace(redis: Redis) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    acme, other = [
        await client.publish("tasks", workspace=w, data={"n": 1}, id="order-42", delay_ms=HOUR)
        for w in ("acme", "other")
    ]
    # Neither is a duplicate of the other: each tenant's job is written, under the id it gave.
    assert (acme.id, acme.duplicate, other.id, other.duplicate) == (
        "order-42", False, "order-42", False,
    )  # fmt: skip
    again = await client.publish("tasks", workspace="acme", data={"n": 3}, id="order-42")
    assert (again.id, again.duplicate) == ("order-42", True)
    found = {w: await jobs.get("tasks", "order-42", workspace=w) for w in ("acme", "other")}
    for workspace, record in found.items():
        assert record is not None
        assert (record.id, record.workspace, record.state) == ("order-42", workspace, "delayed")
    assert (await jobs.counts("tasks")).delayed == 2
    # Each one's moves touch its own job only.
    await jobs.cancel("tasks", "order-42", workspace="acme")
    await jobs.reschedule("tasks", "order-42", workspace="other", delay_ms=7_200_000)
    mine = await jobs.get("tasks", "order-42", workspace="acme")
    theirs = await jobs.get("tasks", "order-42", workspace="other")
    assert mine is not None
    assert theirs is not None
    assert (mine.state, theirs.state) == ("cancelled", "delayed")
    before = found["other"]
    assert before is not None
    assert theirs.due_ms > before.due_ms + 3_000_000


async def test_a_workspace_never_reaches_another_workspaces_job_by_its_id(redis: Redis) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    theirs = await client.publish("tasks", workspace="other", data={"n": 1}, delay_ms=3_600_000)
    assert await jobs.get("tasks", theirs.id, workspace="acme") is None
    with pytest.raises(JobNotFound):
        await jobs.cancel("tasks", theirs.id, workspace="acme")
    with pytest.raises(JobNotFound):
        await jobs.reschedule("tasks", theirs.id, workspace="acme", delay_ms=1)
    record = await jobs.get("tasks", theirs.id, workspace="other")
    assert record is not None
    assert record.state == "delayed"  # untouched by acme's attempts
    # An admin (no workspace) finds a generated id as it is.
    assert await jobs.get("tasks", theirs.id) == record


async def test_a_job_written_before_ids_were_per_workspace_is_still_found(redis: Redis) -> None:
    # The earlier version stored a given id as it was: such a record is its
    # workspace's by that id, and no other workspace's.
    registry = load(SAMPLE)
    jobs = Jobs(redis, registry)
    (keys,) = registry.partitions("tasks", "acme", cluster=is_cluster(redis))
    payload = env.encode_payload({"n": 1})
    old = env.Envelope("legacy-1", "tasks", "acme", payload, env.now_ms())
    await publish(redis, keys, [Outgoing(old, delay_ms=HOUR)])
    assert await jobs.get("tasks", "legacy-1", workspace="other") is None
    assert await jobs.get("tasks", "legacy-1") is not None  # an admin's, as before
    await jobs.cancel("tasks", "legacy-1", workspace="acme")
    record = await jobs.get("tasks", "legacy-1", workspace="acme")
    assert record is not None
    assert (record.id, record.state) == ("legacy-1", "cancelled")
    # A given id is also found by its stored form (a handler's job.id), in its workspace only.
    await Client(redis, registry).publish("tasks", workspace="acme", data={"n": 2}, id="new-1")
    stored = await jobs.get("tasks", "acme~new-1")
    assert stored is not None
    assert (stored.id, stored.workspace) == ("new-1", "acme")
    assert await jobs.get("tasks", "acme~new-1", workspace="other") is None


def test_a_malformed_cursor_raises_invalid_cursor_never_another_error(
    long_target: Target,
) -> None:
    """Any text as a cursor, in any state: a page, or `InvalidCursor` (a SluiceError)."""
    runner = asyncio.Runner()
    redis = connect(RedisSettings(url=long_target.url))
    jobs = Jobs(redis, load(SAMPLE))
    try:

        @settings(max_examples=200, deadline=None)
        @given(
            state=st.sampled_from(get_args(Listable)),
            cursor=st.text(max_size=12)
            | st.builds(
                "{}:{}".format,
                st.integers(-2, 3),
                st.from_regex(r"[0-9b(x.-]{0,24}", fullmatch=True) | st.text(max_size=8),
            ),
        )
        def check(state: Listable, cursor: str) -> None:
            with contextlib.suppress(InvalidCursor):
                runner.run(jobs.page("batch-tasks", state, cursor=cursor, limit=2))

        check()
        for cursor in ("abc", "0:abc", "0:b-x", "-1", "0:(", "0:1-x", "2:", "0:b1"):
            with pytest.raises(SluiceError, match="cursor"):
                runner.run(jobs.page("batch-tasks", "delayed", cursor=cursor))
    finally:
        runner.run(redis.aclose())
        runner.close()


async def test_a_due_time_beyond_the_horizon_is_refused_naming_the_field(redis: Redis) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    beyond = datetime.now(UTC) + HORIZON + timedelta(days=1)
    for when, field in (
        ({"delay_ms": 10**15}, "delay_ms"),
        ({"delay_ms": int(HORIZON.total_seconds() * 1000) + 1}, "delay_ms"),
        ({"run_at": beyond}, "run_at"),
        ({"run_at": "9999-12-31T23:59:59Z"}, "run_at"),
    ):
        with pytest.raises(InvalidSchedule, match=field) as raised:
            await client.publish("tasks", workspace="acme", data={"n": 1}, **when)
        assert raised.value.field == field
    assert await redis.dbsize() == 0  # nothing written
    later = await client.publish(
        "tasks", workspace="acme", data={"n": 1}, run_at=beyond - timedelta(days=2)
    )
    for when, field in (({"delay_ms": 10**15}, "delay_ms"), ({"run_at": beyond}, "run_at")):
        with pytest.raises(InvalidSchedule, match=field):
            await jobs.reschedule("tasks", later.id, **when)
    record = await jobs.get("tasks", later.id)
    assert record is not None
    assert record.due_ms < (beyond - timedelta(days=1)).timestamp() * 1000


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_a_page_limit_out_of_range_is_refused(redis: Redis, limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be 1 to 1000"):
        await Jobs(redis, load(SAMPLE)).page("tasks", "waiting", limit=limit)


@pytest.mark.parametrize("after", [-1.0, 3654 * 86_400.0, float("nan"), float("inf")])
def test_a_retry_beyond_the_horizon_is_refused(after: float) -> None:
    with pytest.raises(ValueError, match="must be 0 to"):
        Retry(after=after)


async def test_a_finished_jobs_status_says_when_its_last_attempt_started_and_how_long_it_ran(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    slow = await client.publish("tasks", workspace="acme", data={"n": 1, "sleep_ms": 300})
    # Outlives the function's 2 s timeout, its one attempt: dead.
    failing = await client.publish("tasks", workspace="acme", data={"n": 2, "mode": "hang"})
    async with worker_in_process(long_target.url, "tasks"):

        async def both_done() -> bool:
            counts = await total_counts(redis, "tasks")
            return counts.completed + counts.dead == 2

        await wait_until(both_done, what="one job completed and one dead")
    for receipt, state, ran_ms in ((slow, "completed", 300), (failing, "dead", 2000)):
        record = await jobs.get("tasks", receipt.id)
        assert record is not None
        assert record.state == state
        assert record.queued_ms <= record.started_ms < record.finished_ms
        # The handler's own time, not the wait for the settle's round trip.
        assert ran_ms <= record.ran_ms <= record.finished_ms - record.started_ms


async def test_an_active_jobs_status_says_since_when_its_handler_runs(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    # Runs past its worker's metrics flush (about a second), well inside the 2 s timeout.
    long = await client.publish("tasks", workspace="acme", data={"n": 1, "sleep_ms": 1700})
    async with worker_in_process(long_target.url, "tasks"):
        active = []

        async def start_shown() -> bool:
            record = await jobs.get("tasks", long.id)
            assert record is not None
            if record.state == "active" and record.started_ms:
                active.append(record)
            return bool(active)

        await wait_until(start_shown, what="the running job's start in its status")
        shown = active[0].started_ms
        assert active[0].queued_ms <= shown

        async def done() -> bool:
            return (await total_counts(redis, "tasks")).completed == 1

        await wait_until(done, what="the job completed")
    finished = await jobs.get("tasks", long.id)
    assert finished is not None
    # The same start, told twice: by the worker's flush (an age in Redis time) and
    # by the settle (its time less the run's). Apart by the flush's round trip.
    assert abs(finished.started_ms - shown) < 250
    # Kept only while it ran.
    assert not await redis.exists(keys_for(redis, "tasks", "acme").started)


async def test_jobs_with_failed_attempts_waiting_for_their_next_are_listed_as_retrying(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    # Fails its first attempt and asks for its next an hour later.
    failing = await client.publish(
        "retry-tasks",
        workspace="acme",
        data={"n": 1, "mode": "retry", "retry_after_ms": 3_600_000, "fail_times": 1},
    )
    later = await client.publish("retry-tasks", workspace="acme", data={"n": 2}, delay_ms=HOUR)
    async with worker_in_process(long_target.url, "retry-tasks"):

        async def retried() -> bool:
            record = await jobs.get("retry-tasks", failing.id)
            return record is not None and record.attempts == 1

        await wait_until(retried, what="the first attempt failed")
    retrying = await jobs.page("retry-tasks", "retrying")
    assert [(j.id, j.state, j.attempts) for j in retrying.jobs] == [(failing.id, "delayed", 1)]
    delayed = await jobs.page("retry-tasks", "delayed")
    assert {j.id for j in delayed.jobs} == {failing.id, later.id}
