"""The global limit of a function with several partitions (streams.global_limit): one
limiter for all of them, asked after each partition's refill took the workspaces'
own limits; on a single server and on a cluster whose partitions live on other nodes."""

from __future__ import annotations

from sluice.streams.connection import Redis, is_cluster
from sluice.streams.consume import refill
from sluice.streams.global_limit import set_global_limit, take_global
from sluice.streams.keys import PartitionKeys, global_limit
from sluice.streams.ratelimit import (
    RESERVE_AHEAD_MS,
    Ask,
    Grant,
    Rates,
    deferral_history,
    deferrals,
    overridden,
)


def partitions(redis: Redis, count: int = 2) -> list[PartitionKeys]:
    spread = count if is_cluster(redis) else 0  # as runtime.registry.partition_keys
    return [PartitionKeys("fn", p, spread) for p in range(count)]


async def take(
    redis: Redis, keys: PartitionKeys, asked: dict[str, int], rates: Rates
) -> dict[str, Grant]:
    """A read's limits as the worker takes them: the refill, then the global limiter."""
    ask = Ask(asked, rates)
    return await take_global(redis, keys, ask, await refill(redis, keys, {}, False, ask=ask))


# 20/s, 0.2 s of burst: 4 at once, then one every 50 ms.
RATES = Rates(20.0, 0.0, 0.2, shared=True)


async def test_the_partitions_share_one_limiter(any_redis: Redis) -> None:
    first, second = partitions(any_redis)
    assert await take(any_redis, first, {"a": 3}, RATES) == {}
    grant = (await take(any_redis, second, {"b": 3}, RATES))["b"]
    assert (grant.granted, grant.reserved, grant.global_hit) == (1, 2, True)
    waits = [due - grant.now_ms for due in grant.due_ms]
    assert 0 < waits[0] <= 50 < waits[1] <= 100
    # Not a share per partition: the state is the function's, in a slot of its own.
    assert await any_redis.exists(first.rate, second.rate) == 0
    assert await any_redis.hexists(global_limit("fn"), "tat")


async def test_jobs_past_the_horizon_are_due_when_their_slot_enters_it(any_redis: Redis) -> None:
    (keys, _) = partitions(any_redis)
    n = 20 * RESERVE_AHEAD_MS // 1000 + 14
    grant = (await take(any_redis, keys, {"a": n}, RATES))["a"]
    assert grant.granted == 4
    assert grant.granted + grant.reserved < n
    past = grant.due_ms[grant.reserved :]
    assert len(past) == n - grant.granted - grant.reserved
    assert all(0 < due - grant.now_ms <= 1000 for due in past)
    assert past == sorted(past)


async def test_a_workspaces_own_limit_comes_first_and_books_no_global_rate(
    any_redis: Redis,
) -> None:
    first, second = partitions(any_redis)
    # 1/s for the workspace (burst 1 s): one now, one reserved a second ahead, and
    # the rest deferred by its own limit, never booked in the global limiter.
    own = Rates(20.0, 1.0, 1.0, shared=True)
    grant = (await take(any_redis, first, {"a": 50}, own))["a"]
    assert (grant.granted, grant.reserved, grant.global_hit) == (1, 2, False)
    # 20/s with 1 s of burst: the other partition's workspace has 20 - 3 left now.
    other = (await take(any_redis, second, {"b": 20}, Rates(20.0, 0.0, 1.0, shared=True)))["b"]
    assert other.granted == 17


async def test_an_override_of_the_global_rate_holds_every_partition(any_redis: Redis) -> None:
    first, second = partitions(any_redis)
    assert not await overridden(any_redis, first)
    await set_global_limit(any_redis, "fn", 2.0)
    assert await overridden(any_redis, second)
    # 2/s with 0.2 s of burst: one now, over both partitions.
    assert (await take(any_redis, first, {"a": 1}, RATES)) == {}
    assert (await take(any_redis, second, {"b": 1}, RATES))["b"].granted == 0
    await set_global_limit(any_redis, "fn", None)
    assert not await overridden(any_redis, first)


async def test_jobs_the_global_limit_held_back_are_recorded_in_their_partition(
    any_redis: Redis,
) -> None:
    (keys, _) = partitions(any_redis)
    await take(any_redis, keys, {"a": 10}, RATES)
    record = (await deferrals(any_redis, keys))["a"]
    assert (record.count, record.asked, record.limit) == (6, 10, "global")
    (event,) = await deferral_history(any_redis, keys, "a")
    assert (event.asked, event.held, event.limit, event.rate_per_s) == (10, 6, "global", 20.0)
