"""The fault battery, what Redis holds: garbage in a stream, and Redis full.

An entry no worker can decode is dead-lettered alone, and the workers go on. A
Redis at its `maxmemory` refuses publishes clearly (RedisFull: a definite
fail), keeps every job it confirmed, and takes publishes again once it has
room. As in the other battery files, each scenario also runs as a negative
control that breaks its promise on purpose, which the checker must then name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streams.connection import Redis
from streams.keys import PartitionKeys
from tests.chaos.harness import FUNCTIONS, Fleet, dead_ids, drained, history_for
from tests.chaos.ledger import Bar, Figures, check, read_calls, violations
from tests.redis_server import RedisServer

pytestmark = pytest.mark.chaos

Report = Callable[[Figures], None]


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-dead-read"])
async def test_an_undecodable_entry_dies_alone(
    redis: Redis,
    shared_server: RedisServer,
    tmp_path: Path,
    long_run: bool,
    figures: Report,
    control: bool,
) -> None:
    # In each function's stream, entries written straight to Redis that are no
    # envelope, among innocent jobs of one workspace (published before the
    # workers start, so reads mix them). The garbage is dead-lettered, no innocent
    # job dies, and the workers go on to the jobs after it. Control: a worker
    # that dead-letters every job read with an entry that does not decode.
    n = 1_000 if long_run else 200
    history = history_for(redis)
    environ = {"BATTERY_DEAD_READ": "1"} if control else {}
    fleet = Fleet(shared_server.url, tmp_path, history, environ=environ)
    for function in FUNCTIONS:
        # First (a worker's first read takes it with a full batch of neighbours),
        # and in the middle.
        for _ in range(2):
            await redis.xadd(
                PartitionKeys(function, 0).stream, {"e": b"\xc1 not an envelope", "w": b"ws"}
            )
            await history.publish(function, history.events(n // 4, sleep_ms=5))
    fleet.start(2)
    try:
        await fleet.ready(redis)
        await drained(redis)
        await fleet.close(redis)
        dead = await dead_ids(redis)
    finally:
        fleet.abandon()
    # A letter that never decoded is listed under a made-up id (streams.deadletter).
    garbage = {d for d in dead if d.startswith("corrupt-")}
    calls = read_calls(fleet.ledger)
    name = "undecodable" + "-control" * control
    result = check(name, history, calls, dead=dead, poison=garbage)
    figures(result)
    broken = violations(result, Bar(duplicates="none"))
    if control:
        assert any(b.startswith("innocent_dead=") for b in broken), result.line()
    else:
        assert broken == [], result.line()
        assert len(garbage) == 2 * len(FUNCTIONS)
