"""The fault battery, Redis's faults: SIGKILLed and restarted, and paused.

As in test_battery_workers, each scenario runs as Sluice runs and as a negative
control that breaks its promise on purpose, which the checker must then name.

On a single server of the test's own (killed, restarted, paused); a cluster's
primary SIGKILLed and restarted, and a failover to a replica, are in
test_cluster_faults.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster as RedisClusterClient

from sluice.runtime import RedisUnavailable
from sluice.streams.connection import Redis, connect
from sluice.streams.jobs import counts
from tests.chaos.harness import (
    FUNCTIONS,
    Fleet,
    drained,
    history_for,
    keys_of,
    progressed,
    publish_load,
)
from tests.chaos.ledger import Bar, Fault, Figures, check, read_calls, violations
from tests.conftest import settings_for
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.runtime.helpers import total_counts

pytestmark = pytest.mark.chaos

Report = Callable[[Figures], None]


async def waiting(redis: Redis) -> int:
    return sum([(await total_counts(redis, f)).waiting for f in FUNCTIONS])


@pytest.mark.parametrize("appendonly", [True, False], ids=["kept-aof-always", "control-aof-off"])
async def test_redis_sigkilled_and_restarted(
    tmp_path: Path, long_run: bool, figures: Report, appendonly: bool
) -> None:
    # Redis (AOF, appendfsync always: infra/redis.conf) SIGKILLed with jobs
    # waiting, running and being published, and started again on its files: every
    # publish it confirmed survives and runs. The workers are frozen for the
    # moment of the kill, so the jobs they hold then (the only ones the fault may
    # repeat) are known. Control: one kill without AOF, which loses the waiting
    # jobs, and whose workers, holding jobs Redis no longer has, must read again:
    # jobs published after the restart run.
    # A control needs one kill's worth of loss, not the long run's counts.
    n, kills = (6_000, 5) if long_run and appendonly else (600, 1)
    server = RedisServer(tmp_path / "redis", appendonly=appendonly)
    server.start()
    redis = connect(settings_for(server.url))
    history = history_for(redis)
    fleet = Fleet(server.url, tmp_path, history)
    fleet.start(2)
    try:
        await fleet.ready(redis)
        share = n // (kills + 1)
        # The control's jobs are slow, so that at the kill every worker holds all
        # it may and its reader waits for the room the held jobs' settles make.
        await publish_load(history, share, sleep_ms=20 if appendonly else 300)
        for k in range(1, kills + 1):
            await progressed(fleet, share * k // 2)
            # Published through the kill: some of these calls fail, some are unknown.
            publishing = asyncio.create_task(
                publish_load(history, share if appendonly else 0, chunk=10, sleep_ms=20)
            )
            async with fleet.frozen(redis) as held:
                assert await waiting(redis) > 0  # confirmed jobs only Redis has
                assert server.process is not None
                history.faults.append(Fault(server.process.pid, time.time_ns(), held))
                server.kill()
            # In a thread: the publisher goes on meanwhile, against a dead server.
            await asyncio.to_thread(server.start)
            await publishing
        if not appendonly:
            # Its workers held jobs Redis no longer has (lost with it, those not
            # started yet dropped): they read again all the same.
            await publish_load(history, 40, sleep_ms=20)
        await drained(redis)
        await fleet.close(redis)
    finally:
        fleet.abandon()
        await redis.aclose()
        server.stop()
    name = "redis-sigkill" + ("" if appendonly else "-control")
    result = check(name, history, read_calls(fleet.ledger))
    figures(result)
    broken = violations(result, Bar(duplicates="held"))
    if appendonly:
        assert broken == [], result.line()
    else:
        assert any(b.startswith("lost=") for b in broken), result.line()


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-timeouts-as-fail"])
async def test_redis_paused(
    server: RedisServer, tmp_path: Path, long_run: bool, figures: Report, control: bool
) -> None:
    # Redis frozen (SIGSTOP) under running workers for longer than the functions'
    # visibility timeout. Publishes made meanwhile time out: none may be taken
    # for ok, and whatever Redis confirmed runs once it is resumed. Control: a
    # publisher that takes a timeout for a failure sees its "failed" jobs run.
    n = 4_000 if long_run else 300
    redis = connect(settings_for(server.url))
    history = history_for(redis, timeouts_fail=control)
    fleet = Fleet(server.url, tmp_path, history)
    fleet.start(2)
    try:
        await fleet.ready(redis)
        await publish_load(history, n, sleep_ms=20)
        await progressed(fleet, n // 4)
        async with fleet.frozen(redis) as held:
            assert server.process is not None
            history.faults.append(Fault(server.process.pid, time.time_ns(), held))
            server.pause()
        during = len(history.ops)
        # Each call waits its whole timeout (settings_for: 2 s) and gives up.
        await asyncio.gather(*(publish_load(history, 20, chunk=10) for _ in range(3)))
        paused = history.ops[during:]
        server.resume()
        await publish_load(history, n, sleep_ms=20)
        await drained(redis)
        await fleet.close(redis)
    finally:
        fleet.abandon()
        await redis.aclose()
    result = check("redis-pause" + "-control" * control, history, read_calls(fleet.ledger))
    figures(result)
    assert all(op.outcome != "ok" for op in paused)
    broken = violations(result, Bar(duplicates="held"))
    if control:
        assert any(b.startswith("unexpected=") for b in broken), result.line()
    else:
        assert broken == [], result.line()


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize("appendonly", [True, False], ids=["kept-aof-always", "control-aof-off"])
async def test_a_cluster_primary_sigkilled_and_restarted(
    tmp_path: Path, figures: Report, appendonly: bool
) -> None:
    # The scenario above on a private 3-master cluster (no replicas): the primary
    # that holds chaos-single's keys is SIGKILLed with jobs waiting, running and
    # being published, and started again on its files, while the other primaries
    # serve chaos-batch on. Control: the cluster without AOF loses the waiting
    # jobs of the killed primary. Bounded counts; with --long only (a private
    # cluster with AOF and a restart).
    cluster = RedisCluster(tmp_path / "cluster", appendonly=appendonly)
    cluster.start()
    redis = connect(settings_for(cluster.url))
    history = history_for(redis)
    fleet = Fleet(cluster.url, tmp_path, history)
    fleet.start(2)
    try:
        await fleet.ready(redis)
        assert isinstance(redis, RedisClusterClient)
        address = redis.get_node_from_key(keys_of(redis, "chaos-single").stream)
        assert address is not None
        (owner,) = (node for node in cluster.nodes if node.port == address.port)
        await publish_load(history, 300, sleep_ms=20 if appendonly else 300)
        await progressed(fleet, 100)
        publishing = asyncio.create_task(
            publish_load(history, 300 if appendonly else 0, chunk=10, sleep_ms=20)
        )
        async with fleet.frozen(redis) as held:
            assert await waiting(redis) > 0  # confirmed jobs only Redis has
            assert owner.process is not None
            history.faults.append(Fault(owner.process.pid, time.time_ns(), held))
            owner.kill()
        await asyncio.to_thread(owner.start)
        await asyncio.to_thread(cluster.wait_ok)
        await publishing
        if not appendonly:
            await publish_load(history, 40, sleep_ms=20)  # the workers read again
        await drained(redis)
        await fleet.close(redis)
    finally:
        fleet.abandon()
        await redis.aclose()
        cluster.stop()
    name = "redis-sigkill-cluster" + ("" if appendonly else "-control")
    result = check(name, history, read_calls(fleet.ledger))
    figures(result)
    broken = violations(result, Bar(duplicates="held"))
    if appendonly:
        assert broken == [], result.line()
    else:
        assert any(b.startswith("lost=") for b in broken), result.line()


@pytest.mark.cluster
@pytest.mark.slow
async def test_counts_on_a_cluster_whose_primary_restarted_are_unavailable_not_a_crash(
    tmp_path: Path,
) -> None:
    # Found by the scenario above: a cluster pipeline answers a command whose node
    # connection broke with the error as its reply (raise_on_error=False, which
    # the counts ask for XPENDING's missing group), and the counts read a
    # ConnectionError as the stats hash: AttributeError, a 500 at the ingress.
    cluster = RedisCluster(tmp_path / "cluster")
    cluster.start()
    redis = connect(settings_for(cluster.url, retries=0))
    try:
        keys = keys_of(redis, "chaos-single")
        await counts(redis, keys)  # a connection to each node, kept in the pool
        assert isinstance(redis, RedisClusterClient)
        address = redis.get_node_from_key(keys.stream)
        assert address is not None
        (owner,) = (node for node in cluster.nodes if node.port == address.port)
        owner.kill()
        with pytest.raises(RedisUnavailable):
            await counts(redis, keys)
    finally:
        await redis.aclose()
        cluster.stop()
