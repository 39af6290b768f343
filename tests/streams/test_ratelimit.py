"""The rate limits (GCRA, limits.lua, taken in the after-read refill call) against a
real redis-server."""

from __future__ import annotations

import pytest

from sluice.streams.connection import Redis
from sluice.streams.consume import refill
from sluice.streams.keys import PartitionKeys
from sluice.streams.ratelimit import (
    GLOBAL,
    HISTORY,
    RESERVE_AHEAD_MS,
    WORKSPACE_AHEAD_MS,
    Ask,
    Grant,
    Rates,
    deferral_history,
    deferrals,
    forget_deferrals,
    set_limit,
)
from tests.conftest import Target


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


KEYS = PartitionKeys("fn", 0)


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def grants(redis: Redis, asked: dict[str, int], **rates: float) -> dict[str, Grant]:
    options = {"global_rate": 0.0, "workspace_rate": 0.0, "burst_s": 1.0, **rates}
    limits = Rates(options["global_rate"], options["workspace_rate"], options["burst_s"])
    return await refill(redis, KEYS, {}, False, ask=Ask(asked, limits))


async def take(redis: Redis, asked: dict[str, int], **rates: float) -> dict[str, tuple[int, int]]:
    """Per workspace: jobs granted, and ms until the first one not granted is due."""
    now = await redis_ms(redis)
    short = await grants(redis, asked, **rates)
    # Workspaces left out got all they asked for.
    return {
        ws: (short[ws].granted, short[ws].due_ms[0] - now) if ws in short else (n, 0)
        for ws, n in asked.items()
    }


async def test_a_burst_of_one_seconds_worth_then_nothing_until_capacity_returns(
    redis: Redis,
) -> None:
    first = await take(redis, {"a": 25}, global_rate=10)
    assert first["a"][0] == 10
    assert 90 <= first["a"][1] <= 110  # the next slot: one interval on
    again = await take(redis, {"a": 5, "b": 5}, global_rate=10)
    assert [g for g, _ in again.values()] == [0, 0]
    assert (await deferrals(redis, KEYS))["a"].count == 20


async def test_the_workspace_limit_binds_each_workspace_alone(redis: Redis) -> None:
    grants = await take(redis, {"a": 30, "b": 30}, workspace_rate=20, global_rate=1000)
    assert {ws: g for ws, (g, _) in grants.items()} == {"a": 20, "b": 20}
    record = (await deferrals(redis, KEYS))["b"]
    assert (record.count, record.asked, record.limit) == (10, 30, "workspace")


async def test_overrides_in_redis_win_over_the_declared_rates(redis: Redis) -> None:
    await set_limit(redis, KEYS, "vip", 100)
    await set_limit(redis, KEYS, GLOBAL, 1000)
    grants = await take(redis, {"vip": 150, "free": 150}, workspace_rate=10, global_rate=50)
    assert {ws: g for ws, (g, _) in grants.items()} == {"vip": 100, "free": 10}
    await set_limit(redis, KEYS, "vip", None)
    assert (await take(redis, {"vip": 1}, workspace_rate=10))["vip"][0] == 0


async def test_jobs_not_granted_get_reserved_slots_that_no_later_job_takes(
    redis: Redis,
) -> None:
    first = (await grants(redis, {"a": 25}, global_rate=10))["a"]
    # 10 now, the other 15 each hold the next slot, one interval apart.
    assert (first.granted, first.reserved, len(first.due_ms)) == (10, 15, 15)
    gaps = [b - a for a, b in zip(first.due_ms, first.due_ms[1:], strict=False)]
    assert all(99 <= gap <= 101 for gap in gaps)
    # A later job, of any workspace, comes after them: their slots stay theirs.
    later = (await grants(redis, {"b": 1}, global_rate=10))["b"]
    assert (later.granted, later.reserved) == (0, 1)
    assert later.due_ms[0] >= first.due_ms[-1] + 99


async def test_slots_are_reserved_only_within_the_horizon(redis: Redis) -> None:
    n = 10 + RESERVE_AHEAD_MS // 100 + 5
    grant = (await grants(redis, {"a": n}, global_rate=10))["a"]
    # At 10/s: a burst of 10, then a slot every 100 ms up to the horizon.
    assert (grant.granted, grant.reserved) == (10, RESERVE_AHEAD_MS // 100)
    # The rest come back as their slots enter the horizon, to ask again.
    now = await redis_ms(redis)
    unreserved = grant.due_ms[grant.reserved :]
    assert len(unreserved) == 5
    assert all(now < due <= now + 600 for due in unreserved)


async def test_a_workspace_over_its_own_limit_reserves_near_and_books_no_global_rate(
    redis: Redis,
) -> None:
    # "a" floods its own 10/s; the function's 1,000/s must stay the others'.
    flood = (await grants(redis, {"a": 100}, workspace_rate=10, global_rate=1000))["a"]
    assert not flood.global_hit
    # A burst of 10, then slots 100 ms apart only within the workspace horizon.
    assert (flood.granted, flood.reserved) == (10, WORKSPACE_AHEAD_MS // 100)
    others = await grants(redis, {"b": 10, "c": 10}, workspace_rate=10, global_rate=1000)
    assert others == {}  # granted in full: a's far slots booked no global rate


async def test_the_global_limit_reserves_far_and_says_it_binds(redis: Redis) -> None:
    grant = (await grants(redis, {"a": 500}, global_rate=10))["a"]
    assert grant.global_hit
    assert (grant.granted, grant.reserved) == (10, 490)
    assert grant.due_ms[-1] - grant.now_ms <= RESERVE_AHEAD_MS


async def test_each_second_with_deferrals_is_one_entry_of_the_workspaces_history(
    redis: Redis,
) -> None:
    # Two reads over the limit within one second add up in one entry, newest first.
    for _ in range(3):  # again if the two reads fell on either side of a second
        await forget_deferrals(redis, KEYS, None)
        await redis.delete(KEYS.rate)
        before = await redis_ms(redis)
        await take(redis, {"a": 25}, global_rate=10)
        await take(redis, {"a": 5}, global_rate=10)
        after = await redis_ms(redis)
        history = await deferral_history(redis, KEYS, "a")
        if before // 1000 == after // 1000:
            break
    (entry,) = history
    assert (entry.asked, entry.held, entry.limit, entry.rate_per_s) == (30, 20, "global", 10.0)
    await redis.delete(KEYS.rate)  # a's reserved slots would hold b back too
    await take(redis, {"b": 30}, workspace_rate=20, global_rate=1000)
    (other,) = await deferral_history(redis, KEYS, "b")
    assert (other.asked, other.held, other.limit, other.rate_per_s) == (30, 10, "workspace", 20.0)


async def test_the_history_keeps_the_newest_seconds_only(redis: Redis) -> None:
    # HISTORY seconds long past, as limits.lua writes them (newest first).
    past = ";".join(f"{1_000_000_000 - i * 1000}|5|1|workspace|10" for i in range(HISTORY))
    await redis.hset(KEYS.deferlog, "a", past)
    await take(redis, {"a": 25}, global_rate=10)
    history = await deferral_history(redis, KEYS, "a")
    assert len(history) == HISTORY
    assert (history[0].asked, history[0].held) == (25, 15)
    assert [e.at_ms for e in history[1:]] == [1_000_000_000 - i * 1000 for i in range(HISTORY - 1)]


async def test_forgetting_a_workspaces_deferrals_keeps_the_others(redis: Redis) -> None:
    await take(redis, {"a": 25, "b": 25}, global_rate=10)
    await forget_deferrals(redis, KEYS, "a")
    assert set(await deferrals(redis, KEYS)) == {"b"}
    assert await deferral_history(redis, KEYS, "a") == []
    assert len(await deferral_history(redis, KEYS, "b")) == 1
    await forget_deferrals(redis, KEYS, None)
    assert (await deferrals(redis, KEYS), await deferral_history(redis, KEYS, "b")) == ({}, [])
