"""When active jobs started (streams.started): written for held entries only, and
gone once an entry settles, changes hands or is handed back."""

from __future__ import annotations

from sluice.streams import started
from sluice.streams.claims import Held, leave
from sluice.streams.connection import Redis
from sluice.streams.consume import ensure_group, read
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys
from sluice.streams.publish import publish
from sluice.streams.reclaim import reclaim
from sluice.streams.settle import Completed, settle
from tests.streams.test_scripts import job

KEYS = PartitionKeys("fn", 0)


async def held(redis: Redis, consumer: str, *ids: str) -> list[str]:
    await ensure_group(redis, KEYS)
    await publish(redis, KEYS, [job(i) for i in ids])
    return [d.entry_id for d in await read(redis, KEYS, consumer, 10, 100)]


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_an_active_jobs_status_shows_the_start_written_for_it(redis: Redis) -> None:
    a, _ = await held(redis, "c1", "a", "b")
    before = await redis_ms(redis)
    assert await started.write(redis, KEYS, "c1", {a: 1500}) == 1
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    assert record.state == "active"
    # Told as an age, stored in Redis time.
    assert before - 1500 <= record.started_ms <= await redis_ms(redis) - 1500
    other = await get_job(redis, KEYS, "b")
    assert other is not None
    assert (other.state, other.started_ms) == ("active", 0)


async def test_only_entries_the_consumer_holds_are_written(redis: Redis) -> None:
    (a,) = await held(redis, "c1", "a")
    # Another consumer's entry, and an id the group never delivered.
    assert await started.write(redis, KEYS, "c2", {a: 10, "1-1": 10}) == 0
    assert not await redis.exists(KEYS.started)


async def test_settling_deletes_the_start(redis: Redis) -> None:
    a, b = await held(redis, "c1", "a", "b")
    await started.write(redis, KEYS, "c1", {a: 10, b: 10})
    await settle(redis, KEYS, "c1", 60_000, [Completed(a, "a", "ws", 1)], 2)
    assert await redis.hkeys(KEYS.started) == [b.encode()]
    record = await get_job(redis, KEYS, "a")
    assert record is not None
    # A finished job's start is its record's: the settle's time less the run.
    assert record.state == "completed"


async def test_an_entry_taken_over_or_handed_back_loses_its_start(redis: Redis) -> None:
    a, b = await held(redis, "frozen", "a", "b")
    await started.write(redis, KEYS, "frozen", {a: 10, b: 10})
    taken = await reclaim(redis, KEYS, "alive", 0, "0-0", 1, stale_ms=3_600_000)
    assert [d.entry_id for d in taken.deliveries] == [a]
    assert await redis.hkeys(KEYS.started) == [b.encode()]
    await leave(redis, KEYS, "frozen", [Held(b, "b")])
    assert not await redis.exists(KEYS.started)
