"""The fault battery, workers' faults: SIGKILL under load, rolling SIGTERM, poison.

Each scenario runs twice: as Sluice runs (its promises must hold) and as a
negative control, with a switch in the battery's handlers that breaks the
promise on purpose (the checker must then name the broken promise, or it
could not fail). RELIABILITY.md lists the scenarios, their bars and figures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import given_id
from tests.chaos.harness import (
    FUNCTIONS,
    Fleet,
    dead_ids,
    drained,
    history_for,
    is_drained,
    progressed,
    publish_load,
)
from tests.chaos.ledger import Bar, Figures, check, read_calls, violations
from tests.conftest import Target
from tests.runtime.helpers import wait_until

pytestmark = pytest.mark.chaos


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """The scenarios here run on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


Report = Callable[[Figures], None]


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-ack-first"])
async def test_workers_sigkilled_under_load(
    redis: Redis,
    long_target: Target,
    tmp_path: Path,
    long_run: bool,
    figures: Report,
    control: bool,
) -> None:
    long_run = long_run and not is_cluster(redis)  # the cluster: bounded counts
    # Three workers with every lane busy and full batches; at each step the oldest
    # worker that has run jobs is frozen, its held jobs noted, and SIGKILLed, and
    # a new one takes its place. Control: handlers that return before their work
    # is done (an acknowledgement before the work) lose the killed worker's.
    # A control needs one run's worth of loss, not the long run's counts.
    n, kills = (6_000, 8) if long_run and not control else (600, 2)
    environ = {"BATTERY_ACK_FIRST": "1"} if control else {}
    history = history_for(redis)
    fleet = Fleet(long_target.url, tmp_path, history, environ=environ)
    fleet.start(3)
    try:
        await fleet.ready(redis)
        share = n // (kills + 1)
        await publish_load(history, share, sleep_ms=20)
        for k in range(1, kills + 1):
            # Each round's jobs queued before its fault: every worker has work.
            await publish_load(history, share, sleep_ms=20)
            await progressed(fleet, share * k - share // 2)
            victim = await fleet.veteran()
            await fleet.kill(redis, victim)
            fleet.start(1)
        await drained(redis)
        await fleet.close(redis)
    finally:
        fleet.abandon()
    result = check("sigkill-workers" + "-control" * control, history, read_calls(fleet.ledger))
    figures(result)
    broken = violations(result, Bar(duplicates="held"))
    if control:
        assert any(b.startswith("lost=") for b in broken), result.line()
    else:
        assert broken == [], result.line()
        assert result.acknowledged == share * (kills + 1)


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-effect-first"])
async def test_rolling_sigterm(
    redis: Redis,
    long_target: Target,
    tmp_path: Path,
    long_run: bool,
    figures: Report,
    control: bool,
) -> None:
    long_run = long_run and not is_cluster(redis)  # the cluster: bounded counts
    # Each worker in turn is stopped with SIGTERM (in-flight jobs finish within
    # the grace period, the rest are handed back) and replaced: nothing lost, and
    # nothing run twice. Control: handlers that do their effect first and then
    # work on past a grace period too short for it are handed back after their
    # effect, which then happens again.
    n, rounds = (4_000, 9) if long_run else (300, 3)
    grace_s, data = (0.3, {"tail_ms": 1000}) if control else (5.0, {"sleep_ms": 20})
    if control:
        n, rounds = 40, 1  # one stop is enough to cut tails
    history = history_for(redis)
    fleet = Fleet(long_target.url, tmp_path, history, grace_s=grace_s)
    fleet.start(3)
    try:
        await fleet.ready(redis)
        share = n // (rounds + 1)
        await publish_load(history, share, **data)
        for k in range(1, rounds + 1):
            await publish_load(history, share, **data)
            await progressed(fleet, share * k - share // 2)
            victim = await fleet.veteran()
            assert fleet.terminate(victim) == 0
            fleet.start(1)
        await drained(redis)
        await fleet.close(redis)
    finally:
        fleet.abandon()
    result = check("rolling-sigterm" + "-control" * control, history, read_calls(fleet.ledger))
    figures(result)
    broken = violations(result, Bar(duplicates="none"))
    if control:
        assert any(b.startswith("duplicates=") for b in broken), result.line()
    else:
        assert broken == [], result.line()


@pytest.mark.parametrize(
    ("mode", "control"),
    [
        ("raise", False),
        ("raise", True),
        ("exit", False),
        ("exit", True),
    ],
    ids=["raise-kept", "raise-control-reject-batch", "exit-kept", "exit-control-one-delivery"],
)
async def test_poison(
    redis: Redis,
    long_target: Target,
    tmp_path: Path,
    long_run: bool,
    figures: Report,
    mode: str,
    control: bool,
) -> None:
    long_run = long_run and not is_cluster(redis)  # the cluster: bounded counts
    # Among innocent jobs of one workspace (so they share batches with it), a job
    # of each function that raises on every attempt, or that ends its worker's
    # process (each crashed worker is replaced). The poison is dead-lettered (by
    # attempts, or by deliveries) and no innocent job dies with it. Controls: a
    # batch handler that rejects its whole batch for its poison job; a single
    # delivery allowed (max_deliveries=1), so the first crash recorded (the
    # second: a first run is not) takes every suspect running beside the poison,
    # before isolation can name the culprit.
    n = 1_000 if long_run else 200
    switch = "BATTERY_RAISE_BATCH" if mode == "raise" else "BATTERY_ONE_DELIVERY"
    history = history_for(redis)
    fleet = Fleet(long_target.url, tmp_path, history, environ={switch: "1"} if control else {})
    fleet.start(2)
    poison: set[str] = set()
    try:
        await fleet.ready(redis)
        for function in FUNCTIONS:
            events = history.events(n // 2, sleep_ms=5)
            bad = history.events(1, mode=mode)
            # The poison in the middle of its innocent neighbours.
            await history.publish(function, events[: n // 4] + bad + events[n // 4 :])
            poison |= {given_id(e.workspace, e.id or "") for e in bad}

        async def settled() -> bool:
            fleet.replace_crashed()
            return await is_drained(redis)

        # Crashed workers are replaced as they die, until nothing is left to run.
        await wait_until(settled, timeout_s=90, what="the poison to be cut")
        await fleet.close(redis)
        dead = await dead_ids(redis)
    finally:
        fleet.abandon()
    calls = read_calls(fleet.ledger)
    name = f"poison-{mode}" + "-control" * control
    result = check(name, history, calls, dead=dead, poison=poison)
    figures(result)
    broken = violations(result, Bar(duplicates="held"))
    if control:
        assert any(b.startswith("innocent_dead=") for b in broken), result.line()
    else:
        assert broken == [], result.line()
        assert poison <= dead
