"""The Lua scripts' semantics against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sluice.streams import envelope as env
from sluice.streams.claims import Extension, Held, extend, leave
from sluice.streams.connection import Redis
from sluice.streams.consume import ensure_group, read
from sluice.streams.deadletter import dead_letters, replay
from sluice.streams.jobs import counts, get_job
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.publish import Outgoing, publish
from sluice.streams.reclaim import reclaim
from sluice.streams.settle import Completed, Dead, settle
from sluice.streams.suspects import forget, mark_started
from tests.conftest import Target
from tests.runtime.helpers import blocked_readers, wait_until


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


KEYS = PartitionKeys("fn", 0)
# Idle time after which a reclaim deletes a consumer holding nothing: none in these tests.
KEEP_MS = 3_600_000


def envelope(job_id: str, workspace: str = "ws") -> env.Envelope:
    return env.Envelope(job_id, "fn", workspace, env.encode_payload({"x": 1}), env.now_ms())


def job(job_id: str, workspace: str = "ws", *, due_ms: int = 0, delay_ms: int = 0) -> Outgoing:
    return Outgoing(envelope(job_id, workspace), due_ms, delay_ms)


async def published(redis: Redis, *ids: str) -> None:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(i) for i in ids])


async def test_publish_writes_stream_entry_and_record(redis: Redis) -> None:
    written = await publish(redis, KEYS, [job("a"), job("b", "other")])
    assert [(w.job_id, w.created) for w in written] == [("a", True), ("b", True)]
    assert await redis.xlen(KEYS.stream) == 2
    record = await get_job(redis, KEYS, "b")
    assert record is not None
    assert (record.state, record.workspace) == ("queued", "other")


async def test_publishing_an_existing_id_writes_nothing(redis: Redis) -> None:
    await publish(redis, KEYS, [job("a")])
    again = await publish(redis, KEYS, [job("a"), job("b"), job("b")])
    assert [(w.job_id, w.created) for w in again] == [("a", False), ("b", True), ("b", False)]
    assert await redis.xlen(KEYS.stream) == 2
    assert (await counts(redis, KEYS)).published == 2


async def test_read_marks_active_and_settle_completes(redis: Redis) -> None:
    await published(redis, "a", "b")
    got = await read(redis, KEYS, "c1", 10, 100)
    assert [env.decode(d.envelope).id for d in got] == ["a", "b"]
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert (record.state, record.consumer, record.deliveries) == ("active", "c1", 1)
    done = await settle(redis, KEYS, "c1", 60_000, [Completed(got[0].entry_id, "a", "ws", 1)], 2)
    assert (done.count, done.fenced) == (1, [])
    a = await get_job(redis, KEYS, "a")
    assert a is not None
    assert (a.state, a.attempts) == ("completed", 1)
    assert await redis.zrange(KEYS.done, 0, -1) == [b"a"]  # retention index
    # Settled entries leave the stream: it holds only unsettled work.
    assert await redis.xlen(KEYS.stream) == 1
    c = await counts(redis, KEYS)
    assert (c.waiting, c.active, c.completed, c.failed) == (0, 1, 1, 0)


async def test_settle_is_fenced_to_the_consumer_that_holds_the_entry(redis: Redis) -> None:
    await published(redis, "a", "b")
    got = await read(redis, KEYS, "frozen", 10, 100)
    # Another worker reclaims "a" after the frozen one's visibility timeout.
    taken = await reclaim(redis, KEYS, "alive", 0, "0-0", 1, stale_ms=KEEP_MS)
    assert [d.entry_id for d in taken.deliveries] == [got[0].entry_id]
    assert taken.deliveries[0].deliveries == 2
    late = await settle(
        redis, KEYS, "frozen", 60_000,
        [Completed(d.entry_id, i, "ws", 1) for d, i in zip(got, "ab", strict=True)],
        2,
    )  # fmt: skip
    assert (late.count, late.fenced) == (1, [got[0].entry_id])
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert (record.state, record.consumer) == ("active", "alive")
    assert (await counts(redis, KEYS)).fenced == 1


async def test_settle_with_a_small_scan_limit_checks_the_rest_one_by_one(redis: Redis) -> None:
    await published(redis, *"abcdef")
    got = await read(redis, KEYS, "c1", 10, 100)
    ids = "abcdef"
    done = await settle(
        redis, KEYS, "c1", 60_000,
        [Completed(d.entry_id, i, "ws", 1) for d, i in zip(got, ids, strict=True)],
        0,
    )  # fmt: skip
    assert (done.count, done.fenced) == (6, [])


async def test_settling_twice_is_harmless(redis: Redis) -> None:
    await published(redis, "a")
    (d,) = await read(redis, KEYS, "c1", 10, 100)
    batch = [Completed(d.entry_id, "a", "ws", 1)]
    assert (await settle(redis, KEYS, "c1", 60_000, batch, 1)).count == 1
    again = await settle(redis, KEYS, "c1", 60_000, batch, 1)
    assert (again.count, again.fenced) == (0, [d.entry_id])
    assert (await counts(redis, KEYS)).completed == 1


async def test_dead_settlement_moves_the_envelope_to_the_dead_letter_stream(redis: Redis) -> None:
    await published(redis, "a")
    (d,) = await read(redis, KEYS, "c1", 10, 100)
    await settle(
        redis,
        KEYS,
        "c1",
        60_000,
        [Dead(d.entry_id, "a", "ws", 1, "poison", d.envelope)],
        1,
    )
    (letter,) = await dead_letters(redis, KEYS)
    assert (letter.envelope.id, letter.reason) == ("a", "poison")
    assert await redis.zscore(KEYS.done, "a") is None  # kept as long as its dead letter
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert record.state == "dead"


async def test_reclaim_counts_deliveries_and_entries_gone_from_the_stream(redis: Redis) -> None:
    await published(redis, "a", "b")
    got = await read(redis, KEYS, "dead-worker", 10, 100)
    await redis.xdel(KEYS.stream, got[1].entry_id)
    first = await reclaim(redis, KEYS, "w1", 0, "0-0", 10, stale_ms=KEEP_MS)
    assert [(d.entry_id, d.deliveries) for d in first.deliveries] == [(got[0].entry_id, 2)]
    assert first.lost == 1
    second = await reclaim(redis, KEYS, "w2", 0, "0-0", 10, stale_ms=KEEP_MS)
    assert second.deliveries[0].deliveries == 3
    assert (await counts(redis, KEYS)).lost == 1


async def test_reclaim_leaves_entries_younger_than_the_visibility_timeout(redis: Redis) -> None:
    await published(redis, "a")
    await read(redis, KEYS, "busy", 10, 100)
    assert (await reclaim(redis, KEYS, "w1", 60_000, "0-0", 10, stale_ms=KEEP_MS)).deliveries == []


async def test_extend_resets_idle_time_without_stealing(redis: Redis) -> None:
    await published(redis, "a", "b")
    got = await read(redis, KEYS, "c1", 10, 100)
    await reclaim(redis, KEYS, "c2", 0, "0-0", 1, stale_ms=KEEP_MS)  # c2 takes "a"
    extension = await extend(redis, KEYS, "c1", [d.entry_id for d in got])
    assert (extension.lost, extension.gone) == ([got[0].entry_id], [])
    pending: list[dict[str, Any]] = await redis.xpending_range(KEYS.stream, GROUP, "-", "+", 10)
    owners = {p["message_id"].decode(): p["consumer"].decode() for p in pending}
    assert owners == {got[0].entry_id: "c2", got[1].entry_id: "c1"}
    # JUSTID: a heartbeat does not count as a delivery.
    assert {p["times_delivered"] for p in pending} == {1, 2}


async def test_extend_resets_the_idle_time_of_every_held_entry(redis: Redis) -> None:
    await published(redis, *"abcdef")
    got = await read(redis, KEYS, "c1", 10, 100)
    ids: list[Any] = [d.entry_id for d in got]
    # Make every entry look long idle, as if its heartbeat were about to lapse.
    await redis.xclaim(KEYS.stream, GROUP, "c1", 0, ids, idle=100_000, justid=True)
    assert await extend(redis, KEYS, "c1", ids) == Extension([], [])
    pending: list[dict[str, Any]] = await redis.xpending_range(KEYS.stream, GROUP, "-", "+", 10)
    assert len(pending) == 6
    assert all(p["time_since_delivered"] < 100_000 for p in pending), pending
    assert {p["consumer"] for p in pending} == {b"c1"}


async def test_extend_does_not_call_an_entry_settled_meanwhile_lost(redis: Redis) -> None:
    await published(redis, "a")
    (d,) = await read(redis, KEYS, "c1", 10, 100)
    await settle(redis, KEYS, "c1", 60_000, [Completed(d.entry_id, "a", "ws", 1)], 1)
    assert await extend(redis, KEYS, "c1", [d.entry_id]) == Extension([], [d.entry_id])


async def test_leave_hands_back_at_once_and_deletes_the_consumer(redis: Redis) -> None:
    await published(redis, "a", "b")
    got = await read(redis, KEYS, "leaving", 10, 100)
    left = await leave(
        redis, KEYS, "leaving", [Held(d.entry_id, i) for d, i in zip(got, "ab", strict=True)]
    )
    assert (left.handed_back, left.deleted) == (2, True)
    consumers = await redis.xinfo_consumers(KEYS.stream, GROUP)
    assert [c["name"] for c in consumers] == []
    again = await read(redis, KEYS, "other", 10, 100)
    assert [env.decode(d.envelope).id for d in again] == ["a", "b"]
    assert [d.deliveries for d in again] == [1, 1]
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert (record.state, record.consumer) == ("active", "other")


async def test_leave_keeps_a_consumer_that_still_holds_unknown_entries(redis: Redis) -> None:
    await published(redis, "a", "b")
    got = await read(redis, KEYS, "leaving", 10, 100)
    left = await leave(redis, KEYS, "leaving", [Held(got[0].entry_id, "a")])
    assert (left.handed_back, left.deleted) == (1, False)


async def test_scripts_reload_after_the_server_forgot_them(redis: Redis) -> None:
    await redis.script_flush()
    written = await publish(redis, KEYS, [job("a")])
    assert written[0].created


async def test_read_recreates_a_group_lost_with_the_data(redis: Redis) -> None:
    await published(redis, "a")
    await redis.flushall()
    assert await read(redis, KEYS, "c1", 10, 100) == []
    await publish(redis, KEYS, [job("b")])
    got = await read(redis, KEYS, "c1", 10, 100)
    assert [env.decode(d.envelope).id for d in got] == ["b"]


async def test_reclaim_forgets_consumers_that_hold_nothing(redis: Redis) -> None:
    await published(redis, "a", "b")
    (first,) = await read(redis, KEYS, "gone", 1, 100)
    await settle(redis, KEYS, "gone", 60_000, [Completed(first.entry_id, "a", "ws", 1)], 1)
    await read(redis, KEYS, "busy", 1, 100)  # holds "b"
    kept = await reclaim(redis, KEYS, "me", 60_000, "0-0", 10, stale_ms=KEEP_MS)
    assert kept.forgotten == 0
    swept = await reclaim(redis, KEYS, "me", 60_000, "0-0", 10, stale_ms=0)
    assert swept.forgotten == 1
    names = [c["name"] for c in await redis.xinfo_consumers(KEYS.stream, GROUP)]
    assert names == [b"busy"]


async def test_a_read_blocked_while_its_consumer_is_deleted_gets_the_next_entry(
    redis: Redis,
) -> None:
    """A reclaim deletes a live worker's consumer that holds nothing, perhaps while
    the worker waits in XREADGROUP: Redis serves that read and makes the consumer
    again (Redis 7.0), so nothing is lost and the entry is pending for it."""
    await published(redis, "a")
    (first,) = await read(redis, KEYS, "live", 1, 100)
    await settle(redis, KEYS, "live", 60_000, [Completed(first.entry_id, "a", "ws", 1)], 1)
    blocked = asyncio.create_task(read(redis, KEYS, "live", 10, 1500))

    async def waiting() -> bool:
        return await blocked_readers(redis) == 1

    await wait_until(waiting, what="the read blocked")
    assert (await reclaim(redis, KEYS, "other", 60_000, "0-0", 10, stale_ms=0)).forgotten == 1
    await publish(redis, KEYS, [job("b")])
    got = await blocked
    assert [env.decode(d.envelope).id for d in got] == ["b"]
    pending: list[dict[str, Any]] = await redis.xpending_range(KEYS.stream, GROUP, "-", "+", 10)
    assert [(p["message_id"].decode(), p["consumer"]) for p in pending] == [
        (got[0].entry_id, b"live")
    ]


async def test_settle_drops_records_past_their_retention(redis: Redis) -> None:
    await published(redis, "a", "b")
    got = await read(redis, KEYS, "c1", 10, 100)
    await settle(redis, KEYS, "c1", 60_000, [Completed(got[0].entry_id, "a", "ws", 1)], 2)
    assert await get_job(redis, KEYS, "a") is not None
    # A settle with no retention left drops every finished record, its own included.
    await settle(redis, KEYS, "c1", 0, [Completed(got[1].entry_id, "b", "ws", 1)], 1)
    assert await get_job(redis, KEYS, "a") is None
    assert await get_job(redis, KEYS, "b") is None
    assert await redis.zcard(KEYS.done) == 0
    # Once dropped, the id may be published again.
    assert (await publish(redis, KEYS, [job("a")]))[0].created


async def test_errors_with_any_characters_round_trip(redis: Redis) -> None:
    await published(redis, "a")
    (d,) = await read(redis, KEYS, "c1", 10, 100)
    error = "ValueError: a|b|c\nsecond line é"
    await settle(redis, KEYS, "c1", 60_000, [Dead(d.entry_id, "a", "ws", 2, error, b"")], 1)
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert (record.state, record.workspace, record.attempts, record.error) == (
        "dead",
        "ws",
        2,
        error,
    )
    assert record.finished_ms >= record.queued_ms > 0


async def test_settle_keeps_at_most_the_newest_records_it_is_told_to(redis: Redis) -> None:
    await published(redis, *"abcde")
    got = await read(redis, KEYS, "c1", 10, 100)
    for d, job_id in zip(got, "abcde", strict=True):
        done = [Completed(d.entry_id, job_id, "ws", 1)]
        await settle(redis, KEYS, "c1", 60_000, done, 5, retention_count=2)
    kept = [job_id for job_id in "abcde" if await get_job(redis, KEYS, job_id) is not None]
    assert kept == ["d", "e"]
    assert await redis.zcard(KEYS.done) == 2


async def test_reclaim_tells_how_often_a_taken_over_job_started(redis: Redis) -> None:
    await published(redis, "a", "b")
    await read(redis, KEYS, "dead", 10, 100)
    first = await reclaim(redis, KEYS, "w1", 0, "0-0", 10, stale_ms=KEEP_MS)
    assert [d.starts for d in first.deliveries] == [0, 0]
    await mark_started(redis, KEYS, [first.deliveries[0].entry_id])
    second = await reclaim(redis, KEYS, "w2", 0, "0-0", 10, stale_ms=KEEP_MS)
    assert [(d.deliveries, d.starts) for d in second.deliveries] == [(3, 1), (3, 0)]
    await forget(redis, KEYS, [first.deliveries[0].entry_id])
    assert await redis.exists(KEYS.suspects) == 0


async def dead_lettered(redis: Redis, job_ids: str, **retention: int) -> None:
    """Publish, read and dead-letter `job_ids` (one character each), one settle each."""
    await published(redis, *job_ids)
    got = await read(redis, KEYS, "c1", 10, 100)
    for d, job_id in zip(got, job_ids, strict=True):
        dead = [Dead(d.entry_id, job_id, "ws", 1, "poison", d.envelope)]
        await settle(redis, KEYS, "c1", 60_000, dead, len(got), **retention)


async def test_settle_keeps_at_most_the_newest_dead_letters_with_their_records(
    redis: Redis,
) -> None:
    await dead_lettered(redis, "abcde", dead_retention_count=2)
    assert [letter.envelope.id for letter in await dead_letters(redis, KEYS)] == ["d", "e"]
    kept = [job_id for job_id in "abcde" if await get_job(redis, KEYS, job_id) is not None]
    assert kept == ["d", "e"]
    assert (await counts(redis, KEYS)).dead == 2
    # Once dropped, the id may be published again.
    assert (await publish(redis, KEYS, [job("a")]))[0].created


async def test_settle_drops_dead_letters_past_their_retention(redis: Redis) -> None:
    await dead_lettered(redis, "ab", dead_retention_ms=3_600_000)
    assert (await counts(redis, KEYS)).dead == 2
    newest = int((await dead_letters(redis, KEYS))[-1].entry_id.split("-")[0])

    async def later() -> bool:
        seconds, micros = await redis.time()
        return seconds * 1000 + micros // 1000 > newest

    # Redis's clock moves on within a millisecond: no sleep needed.
    while not await later():
        pass
    # Kept no time at all: every letter older than this settle goes, its own stays.
    await dead_lettered(redis, "c", dead_retention_ms=0)
    assert [letter.envelope.id for letter in await dead_letters(redis, KEYS)] == ["c"]
    assert await get_job(redis, KEYS, "a") is None
    assert await get_job(redis, KEYS, "b") is None
    assert await get_job(redis, KEYS, "c") is not None
    assert (await counts(redis, KEYS)).dead == 1


async def test_trimming_dead_letters_spares_a_replayed_jobs_new_letter(
    redis: Redis,
) -> None:
    await dead_lettered(redis, "ab")
    letters = await dead_letters(redis, KEYS)
    # "a" is replayed and dead again (a new letter); its old letter is gone already,
    # "b"'s goes with its record.
    assert await replay(redis, KEYS, letters[:1]) == 1
    (d,) = await read(redis, KEYS, "c1", 10, 100)
    dead = [Dead(d.entry_id, "a", "ws", 1, "poison", d.envelope)]
    await settle(redis, KEYS, "c1", 60_000, dead, 1, dead_retention_count=1)
    assert [letter.envelope.id for letter in await dead_letters(redis, KEYS)] == ["a"]
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert record.state == "dead"
    assert await get_job(redis, KEYS, "b") is None
