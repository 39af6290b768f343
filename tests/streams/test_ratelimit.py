"""The rate limits (GCRA, limits.lua, taken in the after-read refill call) against a
real redis-server."""

from __future__ import annotations

from streams.connection import Redis
from streams.consume import refill
from streams.keys import PartitionKeys
from streams.ratelimit import GLOBAL, Ask, Rates, deferrals, set_limit

KEYS = PartitionKeys("fn", 0)


async def take(redis: Redis, asked: dict[str, int], **rates: float) -> dict[str, tuple[int, int]]:
    options = {"global_rate": 0.0, "workspace_rate": 0.0, "burst_s": 1.0, **rates}
    short = await refill(redis, KEYS, {}, False, ask=Ask(asked, Rates(**options)))
    # Workspaces left out got all they asked for.
    return {
        ws: (short[ws].granted, short[ws].wait_ms) if ws in short else (n, 0)
        for ws, n in asked.items()
    }


async def test_a_burst_of_one_seconds_worth_then_nothing_until_capacity_returns(
    redis: Redis,
) -> None:
    first = await take(redis, {"a": 25}, global_rate=10)
    assert first["a"][0] == 10
    assert 90 <= first["a"][1] <= 100  # the next slot: one interval on
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
