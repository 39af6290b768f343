"""Fairness and priorities: each workspace's share of the stream, and its backlog
(streams/admit.lua), against a real redis-server."""

from __future__ import annotations

import msgspec
import pytest

from sluice.streams import envelope as env
from sluice.streams import record as rec
from sluice.streams.cancel import cancel_job
from sluice.streams.claims import Held, leave
from sluice.streams.connection import Redis
from sluice.streams.consume import Delivery, ensure_group, read, refill, taken
from sluice.streams.deadletter import dead_letters, replay
from sluice.streams.delayed import promote_due
from sluice.streams.jobs import counts, get_job
from sluice.streams.keys import PartitionKeys
from sluice.streams.listing import list_jobs
from sluice.streams.publish import Outgoing, publish
from sluice.streams.ratelimit import Ask, Rates
from sluice.streams.settle import Completed, Dead, settle
from tests.conftest import Target


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


KEYS = PartitionKeys("fair", 0)
SHARE = 10


def job(job_id: str, workspace: str, priority: int = env.NORMAL, key: str = "") -> Outgoing:
    payload = env.encode_payload({"x": 1})
    return Outgoing(env.Envelope(job_id, "fair", workspace, payload, 0, key=key, priority=priority))


async def read_now(redis: Redis, count: int) -> list[Delivery]:
    """Read up to `count` entries, as a worker does: then refill from the backlogs."""
    got = await read(redis, KEYS, "c", count, 1)
    await refill(redis, KEYS, taken(got), len(got) < count, SHARE)
    return got


async def take(redis: Redis, count: int) -> list[str]:
    """Read `count` entries (no block when none) and settle them; their job ids in order."""
    got = await read_now(redis, count)
    ids = [env.decode(d.envelope).id for d in got]
    done = [
        Completed(d.entry_id, i, env.decode(d.envelope).workspace, 1)
        for d, i in zip(got, ids, strict=True)
    ]
    await settle(redis, KEYS, "c", 60_000, done, len(done))
    return ids


async def test_a_small_workspace_is_not_queued_behind_a_campaign(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    written = await publish(redis, KEYS, [job(f"a{i}", "big") for i in range(1000)], SHARE)
    assert sum(w.backlogged for w in written) == 1000 - SHARE
    await publish(redis, KEYS, [job("reset", "small")], SHARE)
    # The stream holds the campaign's share, then the small workspace's job.
    first = await take(redis, SHARE + 1)
    assert first[-1] == "reset"
    assert first[:SHARE] == [f"a{i}" for i in range(SHARE)]
    # Reads let the campaign's backlog in, in order, and nothing is lost.
    rest: list[str] = []
    while batch := await take(redis, 64):
        rest += batch
    assert rest == [f"a{i}" for i in range(SHARE, 1000)]
    c = await counts(redis, KEYS)
    assert (c.waiting, c.completed, c.backlogged) == (0, 1001, 1000 - SHARE)


async def test_a_high_job_enters_before_the_normal_backlog(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"n{i}", "ws") for i in range(200)], SHARE)
    await publish(redis, KEYS, [job("urgent", "ws", env.HIGH)], SHARE)
    record = await get_job(redis, KEYS, "urgent")
    assert record is not None
    assert (record.state, record.priority) == ("queued", "high")
    # The share in the stream goes first; the high job is the first to follow.
    assert await take(redis, SHARE) == [f"n{i}" for i in range(SHARE)]
    assert (await take(redis, SHARE))[0] == "urgent"


async def test_low_jobs_get_a_turn_while_normal_ones_keep_coming(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"n{i}", "ws") for i in range(SHARE)], SHARE)
    await publish(redis, KEYS, [job(f"low{i}", "ws", env.LOW) for i in range(4)], SHARE)
    handled: list[str] = []
    for turn in range(4):
        await publish(redis, KEYS, [job(f"m{turn}-{i}", "ws") for i in range(SHARE)], SHARE)
        handled += await take(redis, SHARE)
    # Each refill of 10 places gave low 2 of them, though normal jobs waited too.
    assert [j for j in handled if j.startswith("low")] == ["low0", "low1", "low2", "low3"]
    assert (await counts(redis, KEYS)).waiting > 0


async def test_cancelling_a_backlogged_job_or_an_unread_entry(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"j{i}", "ws") for i in range(SHARE + 3)], SHARE)
    # Waiting in the backlog: removed from it.
    assert await cancel_job(redis, KEYS, [f"j{SHARE}"], share=SHARE) == "cancelled"
    # An unread entry: its place goes to the backlog once half the share is free.
    assert await cancel_job(redis, KEYS, ["j0"], share=SHARE) == "cancelled"
    assert await redis.xlen(KEYS.stream) == SHARE - 1
    ids: list[str] = []
    while batch := await take(redis, 100):
        ids += batch
    assert ids == [f"j{i}" for i in range(1, SHARE + 3) if i != SHARE]
    assert await redis.zcard(KEYS.backlog) == 0


async def test_a_cancelled_backlogged_jobs_status_reads(redis: Redis) -> None:
    # Found by schemathesis: a job cancelled while in its workspace's backlog kept
    # its backlog place in its record, and its status read the empty tail as the
    # envelope of a waiting job: DELETE /v1/jobs/{id} answered 500 once cancelled.
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"j{i}", "ws") for i in range(SHARE + 1)], SHARE)
    assert await cancel_job(redis, KEYS, [f"j{SHARE}"], share=SHARE) == "cancelled"
    for stored in ("written now", "written by the release before"):
        if stored != "written now":
            stored_record = await redis.hget(KEYS.jobs, f"j{SHARE}")
            assert isinstance(stored_record, bytes)
            kept = rec.parse(stored_record)
            old = msgspec.structs.replace(kept, backlog=f"b1{SHARE:016d}")
            await redis.hset(KEYS.jobs, f"j{SHARE}", rec.format(old))
        record = await get_job(redis, KEYS, f"j{SHARE}")
        assert record is not None, stored
        assert (record.state, record.data, record.failures) == ("cancelled", None, ()), stored


async def test_a_key_replaces_a_backlogged_job(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"j{i}", "ws") for i in range(SHARE)], SHARE)
    await publish(redis, KEYS, [job("old", "ws", key="booking:1")], SHARE)
    await publish(redis, KEYS, [job("new", "ws", key="booking:1")], SHARE)
    assert await get_job(redis, KEYS, "old") is None
    assert await redis.zcard(KEYS.backlog) == 1
    ids: list[str] = []
    while batch := await take(redis, 100):
        ids += batch
    assert ids[-1] == "new"
    assert "old" not in ids


async def test_promoted_and_replayed_jobs_wait_their_turn_too(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"j{i}", "ws") for i in range(SHARE)], SHARE)
    later = [Outgoing(o.envelope, delay_ms=60_000) for o in (job("d", "ws", env.HIGH),)]
    await publish(redis, KEYS, later, SHARE)
    await redis.zadd(KEYS.delayed, {"d": 0})
    assert (await promote_due(redis, KEYS, 10, SHARE)).moved == 1
    record = await get_job(redis, KEYS, "d")
    assert record is not None
    assert (record.state, record.priority) == ("queued", "high")
    assert await redis.zcard(KEYS.backlog) == 1
    # A dead letter replayed while the workspace's share is full waits as well.
    got = await read_now(redis, 1)
    letter = env.encode(env.decode(got[0].envelope))
    dead = Dead(got[0].entry_id, "j0", "ws", 1, "boom", letter)
    await settle(redis, KEYS, "c", 60_000, [dead], 1)
    assert await replay(redis, KEYS, await dead_letters(redis, KEYS), SHARE) == 1
    assert await redis.zcard(KEYS.backlog) == 2  # j0 goes behind d, not past it
    ids: list[str] = []
    while batch := await take(redis, 100):
        ids += batch
    assert sorted(ids) == sorted(["d", "j0", *(f"j{i}" for i in range(1, SHARE))])


async def test_waiting_jobs_are_listed_from_the_stream_then_the_backlog(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"j{i}", "ws") for i in range(SHARE + 5)], SHARE)
    seen: list[str] = []
    cursor = ""
    while True:
        page = await list_jobs(redis, KEYS, "waiting", cursor, 4)
        seen += [j.id for j in page.jobs]
        if not (cursor := page.cursor):
            break
    assert sorted(seen) == sorted(f"j{i}" for i in range(SHARE + 5))
    assert (await counts(redis, KEYS)).waiting == SHARE + 5


async def test_a_count_gone_wrong_heals_when_the_stream_runs_dry(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"j{i}", "ws") for i in range(SHARE + 5)], SHARE)
    # As if entries had vanished without their count (a failover losing writes).
    await redis.hset(KEYS.share, "ws", 999)
    ids: list[str] = []
    while batch := await take(redis, 3):
        ids += batch
    assert ids == [f"j{i}" for i in range(SHARE + 5)]


async def test_handed_back_entries_count_as_unread_again(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"j{i}", "ws") for i in range(SHARE + 5)], SHARE)
    got = await read_now(redis, 3)
    held = [Held(d.entry_id, env.decode(d.envelope).id) for d in got]
    # The workspace's count of unread entries, marked "+" while it has a backlog.
    assert await redis.hget(KEYS.share, "ws") == f"{SHARE - 3}+".encode()
    await leave(redis, KEYS, "c", held)
    assert await redis.hget(KEYS.share, "ws") == f"{SHARE}+".encode()
    ids: list[str] = []
    while batch := await take(redis, 100):
        ids += batch
    assert sorted(ids) == sorted(f"j{i}" for i in range(SHARE + 5))


async def test_one_call_after_a_read_refills_and_takes_rate_capacity(redis: Redis) -> None:
    """A function with limits refills and asks its limits in the same script call."""
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(f"a{i}", "big") for i in range(3 * SHARE)], SHARE)
    got = await read(redis, KEYS, "c", SHARE, 1)
    rates = Rates(global_rate=0, workspace_rate=4, burst_s=1)
    short = await refill(redis, KEYS, taken(got), False, SHARE, Ask({"big": SHARE}, rates))
    # The limits: four of the ten may start now, the rest later.
    assert short["big"].granted == 4
    # The refill: the backlog let SHARE more into the stream in the same call.
    assert [env.decode(d.envelope).id for d in await read(redis, KEYS, "c", 100, 1)] == [
        f"a{i}" for i in range(SHARE, 2 * SHARE)
    ]
