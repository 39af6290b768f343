"""The fault battery, the network's faults: connections reset, refused and black-holed.

Every worker and the publisher reach Redis through a TCP proxy in the test
(tests.chaos.proxy), which breaks their connections under load. As in the
other battery files, the scenario also runs as a negative control that breaks
its promise on purpose, which the checker must then name.

On a single server only: a cluster client learns its nodes' own addresses from
CLUSTER SLOTS and goes round a proxy in front of one of them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sluice.runtime import Client
from sluice.runtime.registry import load
from sluice.streams.connection import Redis, RedisSettings, connect
from tests.chaos.harness import (
    BATTERY,
    FUNCTIONS,
    Fleet,
    drained,
    effects,
    held_by,
    progressed,
    publish_load,
)
from tests.chaos.ledger import Bar, Fault, Figures, History, check, read_calls, violations
from tests.chaos.proxy import Proxy
from tests.redis_server import RedisServer

pytestmark = pytest.mark.chaos

Report = Callable[[Figures], None]

# Longer than the call timeout of every client here (1 s), and than the visibility
# timeout of the battery's functions (1 s): calls time out, claims look idle.
FAULT_S = 1.2


async def publish_during(history: History, seconds: float) -> None:
    """Publish a chunk every quarter second for `seconds`, whatever comes of each."""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        await history.publish(FUNCTIONS[i % len(FUNCTIONS)], history.events(10, sleep_ms=20))
        i += 1
        await asyncio.sleep(0.25)  # a publisher's pace, not a wait for an event


async def inject(proxy: Proxy, kind: str) -> None:
    if kind == "reset":
        # Every connection cut, and no new one for the fault's length.
        proxy.reset()
        proxy.refuse()
    else:
        proxy.black_hole("both" if kind == "black-hole" else "replies")


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-timeouts-as-fail"])
async def test_connections_reset_refused_and_black_holed(
    redis: Redis,
    shared_server: RedisServer,
    tmp_path: Path,
    long_run: bool,
    figures: Report,
    control: bool,
) -> None:
    # Under two working workers and a publisher: every connection reset and new
    # ones refused; then a black hole (connections accepted, nothing goes
    # through); then a black hole for the replies only (requests reach Redis:
    # writes happen unseen). Nothing acknowledged is lost, duplicates are only of
    # jobs held at a fault, no publish that ran inside a fault is taken for ok,
    # and the workers come back and exit cleanly. Control: a publisher that takes
    # a timeout for a failure sees its "failed" jobs run (their writes went through).
    kinds = ["replies"] if control else ["reset", "black-hole", "replies"] * (3 if long_run else 1)
    n = 60 * len(kinds)
    proxy = Proxy(shared_server.port)
    await proxy.start()
    publisher = connect(RedisSettings(url=proxy.url, connect_timeout_s=0.5, socket_timeout_s=1.0))
    history = History(Client(publisher, load(BATTERY)), timeouts_fail=control)
    environ = {"SLUICE_REDIS_SOCKET_TIMEOUT_S": "1"}
    fleet = Fleet(proxy.url, tmp_path, history, environ=environ)
    fleet.start(2)
    windows: list[tuple[int, int]] = []
    try:
        await fleet.ready(redis)
        share = n // (len(kinds) + 1)
        await publish_load(history, share, sleep_ms=20)
        for kind in kinds:
            await publish_load(history, share, sleep_ms=20)
            await progressed(fleet, effects(fleet) + share // 4)
            start_ns = time.time_ns()
            await inject(proxy, kind)
            await asyncio.sleep(0.05)  # what was on the wire arrives
            # Pending now, for any worker: the only jobs the fault can run twice.
            history.faults.append(Fault(os.getpid(), start_ns, await held_by(redis)))
            publishing = asyncio.create_task(publish_during(history, FAULT_S))
            await asyncio.sleep(FAULT_S)  # the fault's length
            await proxy.heal()
            windows.append((start_ns, time.time_ns()))
            await publishing
        await drained(redis)
        await fleet.close(redis)
    finally:
        fleet.abandon()
        await publisher.aclose()
        await proxy.close()
    result = check("network" + "-control" * control, history, read_calls(fleet.ledger))
    figures(result)
    inside = [
        op for op in history.ops for s, e in windows if op.invoke_ns >= s and op.complete_ns <= e
    ]
    assert inside  # publishes were made inside the faults
    assert all(op.outcome != "ok" for op in inside)
    broken = violations(result, Bar(duplicates="held"))
    if control:
        assert any(b.startswith("unexpected=") for b in broken), result.line()
    else:
        assert broken == [], result.line()
