"""The fault battery, time's faults: a zombie worker, and clocks ±300 s off.

A worker frozen past its visibility timeout comes back after its jobs were
taken over and finished: it may end the calls it was running (their settles
are fenced) but must start none. Schedulers and workers whose clocks are off by
five minutes promote no delayed job early, since due times are Redis's clock.
As in the other battery files, each scenario also runs as a negative control
that breaks its promise on purpose, which the checker must then name.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import msgspec
import pytest

from sluice.streams.connection import Redis
from sluice.streams.delayed import promote_due
from sluice.streams.keys import PartitionKeys
from tests.chaos.harness import (
    BATTERY,
    FUNCTIONS,
    Fleet,
    drained,
    held_by,
    history_for,
)
from tests.chaos.ledger import Bar, Figures, check, read_calls, violations
from tests.conftest import Target
from tests.runtime.helpers import start_worker, wait_until

pytestmark = pytest.mark.chaos


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """The scenarios here run on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target)."""
    return long_target.redis


Report = Callable[[Figures], None]
SKEW_S = 300


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-no-fence"])
async def test_a_zombie_worker_starts_nothing_after_it_thaws(
    redis: Redis,
    long_target: Target,
    tmp_path: Path,
    long_run: bool,
    figures: Report,
    control: bool,
) -> None:
    # One worker takes a backlog of chaos-single jobs (4 lanes: most wait in its
    # queue) and is frozen (SIGSTOP) past the 1 s visibility timeout; a second
    # worker takes them all over and finishes them; then the zombie is thawed.
    # The calls it was running end (duplicates of jobs it held), and it starts
    # none of the jobs it had queued. Control: a worker that runs a late call
    # without asking Redis whether its jobs are still its own.
    n = 200 if long_run else 40
    history = history_for(redis)
    environ = {"BATTERY_NO_FENCE": "1"} if control else {}
    fleet = Fleet(long_target.url, tmp_path, history, environ=environ)
    fleet.start(1)
    try:
        await fleet.ready(redis)
        (zombie,) = fleet.live
        await history.publish("chaos-single", history.events(n, sleep_ms=200))

        async def queued() -> bool:
            return len(await held_by(redis, zombie.pid)) > 8  # more than its lanes run

        await wait_until(queued, what="the zombie to queue jobs")
        fault = await fleet.freeze(redis, zombie)
        fleet.start(1)
        await drained(redis)
        zombie.send_signal(signal.SIGCONT)

        async def came_to(late: bool) -> bool:
            if late:
                calls = read_calls(fleet.ledger)
                return any(c.pid == zombie.pid and c.start_ns > fault.at_ns for c in calls)
            return "late jobs not run" in fleet.log.read_text()

        # The control's zombie runs a queued job; Sluice's says it skips them.
        await wait_until(lambda: came_to(control), what="the zombie to come to its queue")
        await fleet.close(redis)
    finally:
        fleet.abandon()
    result = check("zombie" + "-control" * control, history, read_calls(fleet.ledger))
    figures(result)
    broken = violations(result, Bar(duplicates="held"))
    if control:
        assert any(b.startswith("late_calls=") for b in broken), result.line()
    else:
        assert broken == [], result.line()
        assert result.acknowledged == n


@contextlib.asynccontextmanager
async def schedulers(url: str, log: Path, *skews_s: int) -> AsyncIterator[None]:
    """`sluice scheduler` processes of the battery's functions, one per clock skew."""
    procs: list[subprocess.Popen[bytes]] = []
    for skew in skews_s:
        environ = {"SLUICE_FUNCTIONS": BATTERY, "BATTERY_SKEW_S": str(skew)}
        procs.append(start_worker(url, log, role="scheduler", log=log, environ=environ))
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in procs]
        assert codes == [0] * len(codes), f"schedulers exited with {codes}"


async def promote_by_own_clock(redis: Redis, skew_s: int) -> None:
    """The control's scheduler: it takes a job for due by its own clock, skew_s
    ahead, and moves it (its due time set to 0, then promoted by Redis's rule)."""
    while True:
        horizon_ms = time.time_ns() // 1_000_000 + skew_s * 1000
        for function in FUNCTIONS:
            keys = PartitionKeys(function, 0)
            due = cast(list[bytes], await redis.zrangebyscore(keys.delayed, "-inf", horizon_ms))
            if due:
                await redis.zadd(keys.delayed, dict.fromkeys(due, 0), xx=True)
                await promote_due(redis, keys, 1000)
        await asyncio.sleep(0.05)  # a scheduler's pass


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-own-clock"])
async def test_clocks_off_by_five_minutes_promote_nothing_early(
    redis: Redis,
    long_target: Target,
    tmp_path: Path,
    long_run: bool,
    figures: Report,
    control: bool,
) -> None:
    # Two schedulers, one 300 s ahead and one 300 s behind, and two workers as
    # skewed, run jobs delayed by 0.3 to 1.65 s: none starts before it is due (by
    # the host's true clock, which is Redis's), and all run. Control: a scheduler
    # that judges due times by its own clock, 300 s ahead, runs them early.
    n = 400 if long_run else 60
    history = history_for(redis)
    fleet = Fleet(long_target.url, tmp_path, history)
    log = tmp_path / "schedulers.log"
    skews = () if control else (SKEW_S, -SKEW_S)
    for skew in skews:
        fleet.start(1, environ={"BATTERY_SKEW_S": str(skew)})
    if control:
        fleet.start(1)
    try:
        async with schedulers(long_target.url, log, *skews):
            await fleet.ready(redis)
            promoter = asyncio.create_task(promote_by_own_clock(redis, SKEW_S)) if control else None
            for i, function in enumerate(FUNCTIONS):
                events = history.events(n // 2, sleep_ms=10)
                delayed = [
                    msgspec.structs.replace(e, delay_ms=300 + (j % 10) * 150 + 3000 * control)
                    for j, e in enumerate(events, start=i)
                ]
                await history.publish(function, delayed)
            await drained(redis)
            if promoter is not None:
                promoter.cancel()
            await fleet.close(redis)
    finally:
        fleet.abandon()
    result = check("clock-skew" + "-control" * control, history, read_calls(fleet.ledger))
    figures(result)
    broken = violations(result, Bar())
    if control:
        assert any(b.startswith("early=") for b in broken), result.line()
    else:
        assert broken == [], result.line()
        assert result.completed == n
        # Each scheduler and worker ran with its clock off (tests.chaos.battery_functions).
        skewed = (log.read_text() + fleet.log.read_text()).count("battery clock skewed")
        assert skewed == 2 * len(skews)
