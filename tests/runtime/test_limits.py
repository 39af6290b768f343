"""Rate limits across worker processes: never above the limit, nothing failed or dropped."""

from __future__ import annotations

import collections
import math
import signal
from pathlib import Path

import pytest

from sluice.runtime import Client, Event, Job, Limits, Metrics, function
from sluice.runtime.registry import load
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.consume import refill
from sluice.streams.errors import ConfigurationError
from sluice.streams.global_limit import take_global
from sluice.streams.keys import global_limit
from sluice.streams.ratelimit import GLOBAL, Ask, Rates, overridden, set_limit
from tests.conftest import Target
from tests.runtime.helpers import (
    SAMPLE,
    LoopLag,
    blocked_readers,
    read_ledger,
    start_worker,
    total_counts,
    wait_completed,
    wait_until,
    worker_in_process,
)
from tests.sample_functions import Task


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """Every test here runs on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


def start_times(path: Path) -> dict[str, list[float]]:
    """Job id -> wall-clock seconds of each start (ATTEMPTS_FILE)."""
    starts: dict[str, list[float]] = collections.defaultdict(list)
    for line in path.read_text().splitlines():
        job_id, _, ns = line.split()
        starts[job_id].append(int(ns) / 1e9)
    return starts


def busiest_second(times: list[float]) -> int:
    """The most starts within any 1-second window."""
    times = sorted(times)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


@pytest.fixture
def attempts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "attempts"
    monkeypatch.setenv("ATTEMPTS_FILE", str(path))
    return path


async def test_a_global_limit_holds_across_three_workers_and_defers_the_rest(
    redis: Redis, long_target: Target, ledger: Path, attempts: Path, long_run: bool
) -> None:
    n = 2_000 if long_run else 300
    client = Client(redis, load(SAMPLE))
    events = [Event(workspace=f"ws{i % 5}", data={"n": i}) for i in range(n)]
    published = {r.id for r in await client.publish_many("limited-tasks", events)}
    workers = [start_worker(long_target.url, ledger, functions="limited-tasks") for _ in range(2)]
    try:
        async with (
            LoopLag().watching() as lag,
            worker_in_process(long_target.url, "limited-tasks", scheduler=True),
        ):

            async def all_done() -> bool:
                return (await total_counts(redis, "limited-tasks")).completed == n

            await wait_until(all_done, timeout_s=n / 50 + 30, what=f"{n} rate-limited jobs")

            # A worker process that is still starting (a loaded machine) when the
            # others have run every job would die of the SIGTERM, not stop cleanly.
            async def every_worker_reads() -> bool:
                return await blocked_readers(redis) >= 3

            await wait_until(every_worker_reads, what="the three workers to wait for more")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            assert w.wait(timeout=15) == 0
    handled = read_ledger(ledger)
    assert set(handled) == published
    assert max(handled.values()) == 1
    starts = [t for ts in start_times(attempts).values() for t in ts]
    busiest = busiest_second(starts)
    print(f"{n} jobs at 50/s (burst 10) over 3 workers: busiest second {busiest} starts"
          f" (loop lag {lag.max_s:.3f} s)")  # fmt: skip
    # Plus the slots that passed while a process stood still (the machine busy with
    # other work), which start together after it: this process's longest stall
    # stands for the workers' (README: Rate limits).
    assert busiest <= 50 + 10 + math.ceil(50 * lag.max_s)
    counts = await total_counts(redis, "limited-tasks")
    assert (counts.failed, counts.dead) == (0, 0)
    deferred = await Limits(redis, load(SAMPLE)).deferrals("limited-tasks")
    assert set(deferred) == {f"ws{i}" for i in range(5)}
    assert all(d.limit == "global" for d in deferred.values())


async def test_a_tier_override_gives_one_workspace_its_own_rate(
    redis: Redis, long_target: Target, ledger: Path, attempts: Path
) -> None:
    registry = load(SAMPLE)
    client, limits = Client(redis, registry), Limits(redis, registry)
    await limits.set_workspace("tier-tasks", "gold", 40)
    events = [Event(workspace=ws, data={"n": i}) for i in range(30) for ws in ("gold", "free")]
    receipts = await client.publish_many("tier-tasks", events)
    workspace_of = {r.id: e.workspace for r, e in zip(receipts, events, strict=True)}
    async with worker_in_process(long_target.url, "tier-tasks", scheduler=True):

        async def all_done() -> bool:
            return (await total_counts(redis, "tier-tasks")).completed == 60

        await wait_until(all_done, what="60 jobs of two tiers")
    by_ws: dict[str, list[float]] = {"gold": [], "free": []}
    for job_id, ts in start_times(attempts).items():
        by_ws[workspace_of[job_id]] += ts
    assert busiest_second(by_ws["free"]) <= 10 + 2
    assert busiest_second(by_ws["gold"]) <= 40 + 8
    # Gold runs at four times the pace: done long before free.
    assert max(by_ws["gold"]) < max(by_ws["free"]) - 1
    assert set(read_ledger(ledger)) == set(workspace_of)


async def test_a_run_time_override_limits_a_function_declared_without_one(
    redis: Redis, long_target: Target, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client, limits = Client(redis, registry), Limits(redis, registry)
    # "tasks" declares no rate; 10/s with a burst of 1 s lets 10 start at once.
    await limits.set_workspace("tasks", "acme", 10)
    await client.publish_many("tasks", [Event(workspace="acme", data={"n": i}) for i in range(20)])
    async with worker_in_process(long_target.url, "tasks", scheduler=True):

        async def all_done() -> bool:
            return (await total_counts(redis, "tasks")).completed == 20

        await wait_until(all_done, what="20 jobs under an override")
    deferred = (await limits.deferrals("tasks"))["acme"]
    assert deferred.limit == "workspace"
    # The other 10 waited their turn, each once.
    assert 1 <= deferred.count <= 10


async def test_jobs_over_a_limit_are_each_deferred_once(target: Target, ledger: Path) -> None:
    redis = target.redis
    registry = load(SAMPLE)
    n = 60
    client = Client(redis, registry)
    # 50/s with bursts of 10: 10 start at once, the other 50 get the next slots.
    await client.publish_many(
        "limited-tasks", [Event(workspace="acme", data={"n": i}) for i in range(n)]
    )
    async with worker_in_process(target.url, "limited-tasks", scheduler=True):
        await wait_completed(redis, "limited-tasks", n)
    deferred = (await Limits(redis, registry).deferrals("limited-tasks"))["acme"]
    assert deferred.count <= n - 10
    assert set(read_ledger(ledger).values()) == {1}


async def test_a_backlog_far_over_the_limit_waits_in_the_worker_not_in_deferrals(
    redis: Redis, long_target: Target, ledger: Path, attempts: Path
) -> None:
    # Three seconds' worth at 50/s (burst 10): each job past the burst holds a
    # reserved slot and waits for it in the worker, whose reads slow to the
    # limit; none goes round the delayed set, none starts early.
    n = 150
    client = Client(redis, load(SAMPLE))
    await client.publish_many(
        "limited-tasks", [Event(workspace=f"ws{i % 3}", data={"n": i}) for i in range(n)]
    )
    async with worker_in_process(long_target.url, "limited-tasks", scheduler=True):
        await wait_completed(redis, "limited-tasks", n)
    final = await total_counts(redis, "limited-tasks")
    assert final.promoted == 0  # no job was deferred through the delayed set
    assert set(read_ledger(ledger).values()) == {1}
    starts = [t for ts in start_times(attempts).values() for t in ts]
    assert busiest_second(starts) <= 50 + 10


async def test_a_global_limit_over_four_partitions_is_all_one_busy_workspaces(
    target: Target, ledger: Path, attempts: Path
) -> None:
    # 20/s (burst 0.2 s: 4 at once) over 4 partitions, every job of one workspace,
    # so of one partition: it gets the whole limit, not a quarter of it, and the
    # partitions together never pass it (the limiter is the function's, not a share
    # per partition; on a cluster in a slot of its own).
    n = 64
    client = Client(target.redis, load(SAMPLE))
    events = [Event(workspace="acme", data={"n": i}) for i in range(n)]
    published = {r.id for r in await client.publish_many("spread-limited-tasks", events)}
    async with worker_in_process(target.url, "spread-limited-tasks", scheduler=True):

        async def all_done() -> bool:
            counts = await total_counts(target.redis, "spread-limited-tasks", 4)
            return counts.completed == n

        # A quarter of the limit would take 12 s.
        await wait_until(all_done, timeout_s=8, what=f"{n} jobs under 20/s over 4 partitions")
    assert set(read_ledger(ledger)) == published
    starts = sorted(t for ts in start_times(attempts).values() for t in ts)
    achieved = (n - 1) / (starts[-1] - starts[0])
    busiest = busiest_second(starts)
    print(f"one workspace over 4 partitions at 20/s: {achieved:.1f}/s, busiest second {busiest}")
    assert achieved >= 16
    assert busiest <= 20 + 4


async def test_a_global_override_of_a_function_with_partitions_is_the_functions_own(
    redis: Redis,
) -> None:
    registry = load(SAMPLE)
    limits = Limits(redis, registry)
    parts = registry.partitions("spread-limited-tasks", cluster=is_cluster(redis))
    # A share per partition, as an older release set it, goes.
    await set_limit(redis, parts[0], GLOBAL, 5.0)
    await limits.set_global("spread-limited-tasks", 8.0)
    assert await redis.hget(global_limit("spread-limited-tasks"), "rate") == b"8.0"
    assert await redis.exists(*(keys.limits for keys in parts)) == 0
    assert await overridden(redis, parts[3])
    await limits.set_global("spread-limited-tasks", None)
    assert not await overridden(redis, parts[3])


@pytest.mark.parametrize("rate", [0.0, -1.0, 1e-300, float("nan"), float("inf"), 2e6])
async def test_a_rate_no_limit_can_have_is_refused_and_writes_nothing(
    redis: Redis, rate: float
) -> None:
    limits = Limits(redis, load(SAMPLE))
    with pytest.raises(ConfigurationError, match="rate limit must be"):
        await limits.set_global("tasks", rate)
    with pytest.raises(ConfigurationError, match="rate limit must be"):
        await limits.set_workspace("tasks", "acme", rate)
    assert await redis.dbsize() == 0


@pytest.mark.parametrize("rate", [-1.0, 1e-300, float("nan"), 2e6])
def test_a_function_declared_with_such_a_rate_is_refused(rate: float) -> None:
    with pytest.raises(ConfigurationError, match="rate_per_s must be 0 or"):
        function("bad", input=Task, rate_per_s=rate)(_noop)
    with pytest.raises(ConfigurationError, match="workspace_rate_per_s must be 0 or"):
        function("bad", input=Task, workspace_rate_per_s=rate)(_noop)


async def _noop(job: Job[Task]) -> None:
    del job


async def test_a_workspaces_deferral_history_names_the_functions_rate_and_reset_forgets_it(
    redis: Redis,
) -> None:
    registry = load(SAMPLE)
    limits, metrics = Limits(redis, registry), Metrics(redis, registry)
    # batch-tasks has 2 partitions: their global limiter is the function's own.
    (keys,) = registry.partitions("batch-tasks", "acme", cluster=is_cluster(redis))
    ask = Ask({"acme": 8}, Rates(10.0, 0.0, 0.5, shared=True))
    await take_global(redis, keys, ask, await refill(redis, keys, {}, False, ask=ask))
    (event,) = await limits.history("batch-tasks", "acme")
    assert (event.asked, event.held, event.limit, event.rate_per_s) == (8, 3, "global", 10.0)
    await metrics.reset("batch-tasks", "other")
    assert len(await limits.history("batch-tasks", "acme")) == 1
    await metrics.reset("batch-tasks", "acme")
    assert await limits.history("batch-tasks", "acme") == []
    assert await limits.deferrals("batch-tasks") == {}
