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

from sluice.runtime import DeadLetters
from sluice.runtime.registry import load
from sluice.streams.connection import Redis, connect
from sluice.streams.keys import PartitionKeys
from tests.chaos.harness import BATTERY, FUNCTIONS, Fleet, dead_ids, drained, history_for
from tests.chaos.ledger import Bar, Figures, check, read_calls, violations
from tests.conftest import Target, settings_for
from tests.redis_server import RedisServer

pytestmark = pytest.mark.chaos


@pytest.fixture
def redis(long_target: Target) -> Redis:
    """The scenarios here run on the single server, and on the 3-master cluster too
    with --long (tests/conftest.py: long_target); Redis full stays on one server of
    its own: it sets that server's maxmemory (CONFIG SET) from its INFO memory, and a
    cluster is full node by node."""
    return long_target.redis


Report = Callable[[Figures], None]


@pytest.mark.parametrize("control", [False, True], ids=["kept", "control-dead-read"])
async def test_an_undecodable_entry_dies_alone(
    redis: Redis,
    long_target: Target,
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
    fleet = Fleet(long_target.url, tmp_path, history, environ=environ)
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
        # A letter that never decoded is listed under a made-up id (streams.deadletter),
        # from its dead-letter entry: two functions' may be the same.
        letters = DeadLetters(redis, load(BATTERY))
        garbage = {
            f"{function}/{letter.envelope.id}"
            for function in FUNCTIONS
            for letter in await letters.read(function, limit=100)
            if letter.envelope.id.startswith("corrupt-")
        }
    finally:
        fleet.abandon()
    calls = read_calls(fleet.ledger)
    name = "undecodable" + "-control" * control
    poison = {d for d in dead if d.startswith("corrupt-")}
    result = check(name, history, calls, dead=dead, poison=poison)
    figures(result)
    broken = violations(result, Bar(duplicates="none"))
    if control:
        assert any(b.startswith("innocent_dead=") for b in broken), result.line()
    else:
        assert broken == [], result.line()
        assert len(garbage) == 2 * len(FUNCTIONS)


ROOM = 600_000  # bytes left for jobs: some 850 of the battery's


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"], ids=["kept", "control-lru"])
async def test_redis_full(tmp_path: Path, figures: Report, policy: str) -> None:
    # Redis at its maxmemory: a ballast key (another application's data) and a
    # limit leave room for some 850 jobs, published in chunks, the workers frozen, until Redis
    # refuses them (RedisFull, a definite fail: nothing was written). Thawed, the
    # workers drain it while it is full; the ballast is deleted (memory frees) and
    # publishes are taken again. Nothing confirmed is lost. Control: the
    # allkeys-lru policy, which makes room by evicting Sluice's keys (there is no
    # ballast to evict first).
    server = RedisServer(tmp_path / "redis", options=("--maxmemory-policy", policy))
    server.start()
    redis = connect(settings_for(server.url))
    history = history_for(redis)
    fleet = Fleet(server.url, tmp_path, history)
    try:
        # The workers join first (a full Redis refuses to create their group:
        # RELIABILITY.md, findings), then are frozen while Redis fills.
        fleet.start(2)
        await fleet.ready(redis)
        async with fleet.frozen(redis):
            if policy == "noeviction":
                # Made in Redis (SETRANGE past the end pads with zeros): a 2 MB request
                # would leave a query buffer, counted in used_memory for a while. Not
                # in the control, where it would be evicted before Sluice's keys.
                await redis.setrange("ballast", 2_000_000, b"\0")
            used = int((await redis.info("memory"))["used_memory"])
            await redis.config_set("maxmemory", used + ROOM)
            chunks = 0
            # Control: as many jobs again as there is room for, or more.
            while chunks < 40:
                outcome = await history.publish(FUNCTIONS[chunks % 2], history.events(50))
                chunks += 1
                if outcome == "fail":
                    break
            refused = [await history.publish(f, history.events(50)) for f in FUNCTIONS]
        await drained(redis)
        await redis.delete("ballast")
        after = [await history.publish(f, history.events(50)) for f in FUNCTIONS]
        await drained(redis)
        await fleet.close(redis)
    finally:
        fleet.abandon()
        await redis.aclose()
        server.stop()
    name = "redis-full" + "-control" * (policy != "noeviction")
    result = check(name, history, read_calls(fleet.ledger))
    figures(result)
    broken = violations(result, Bar(duplicates="none"))
    if policy == "noeviction":
        assert broken == [], result.line()
        # Refused as full (a definite fail) or, freed a little meanwhile, taken:
        # never an error that leaves the publisher guessing.
        assert result.failed > 0
        assert set(refused) <= {"ok", "fail"}
        assert after == ["ok", "ok"]
    else:
        assert any(b.startswith("lost=") for b in broken), result.line()


@pytest.mark.slow
async def test_workers_join_a_function_first_read_while_redis_is_full(tmp_path: Path) -> None:
    # Jobs published before any worker ever ran fill Redis; a worker started then
    # should drain them (reads and settles are served when full), not wait for an
    # operator. With --long only: the failure is a wait.
    server = RedisServer(tmp_path / "redis")
    server.start()
    redis = connect(settings_for(server.url))
    history = history_for(redis)
    fleet = Fleet(server.url, tmp_path, history)
    try:
        used = int((await redis.info("memory"))["used_memory"])
        await redis.config_set("maxmemory", used + ROOM)
        while await history.publish(FUNCTIONS[len(history.ops) % 2], history.events(50)) == "ok":
            pass
        fleet.start(1)
        await drained(redis, timeout_s=15)
        await fleet.close(redis)
    finally:
        fleet.abandon()
        await redis.aclose()
        server.stop()
