"""The fault battery, Redis ACL: Sluice runs as a user with only its own keys and
the commands it sends (infra/redis-acl.conf).

The core scenario under that user: a worker process (which also promotes due
jobs) and the Python client publish, run, retry, dead-letter and delay
jobs; the only command Redis refused the user meanwhile is CONFIG (the start-up
check reads without it). Then the user tries what it must not: FLUSHALL,
CONFIG, KEYS, and allowed commands on keys and channels outside `sluice:*`.
The control opens the user (`~* &* +@all`) and asserts the refusal check then
fails.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.exceptions

from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.streams.connection import Redis, connect
from tests.chaos.conftest import Reported
from tests.chaos.security import Tally
from tests.conftest import settings_for
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE, start_worker, total_counts, wait_until

pytestmark = pytest.mark.chaos

Report = Callable[[Reported], None]

RULE = Path(__file__).parents[2] / "infra" / "redis-acl.conf"
OPEN = ["on", "~*", "&*", "+@all"]

# What the user must not do: a command outside its list, and its own commands on
# another application's keys and channels.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "FLUSHALL": ("FLUSHALL",),
    "FLUSHDB": ("FLUSHDB",),
    "CONFIG GET": ("CONFIG", "GET", "requirepass"),
    "CONFIG SET": ("CONFIG", "SET", "appendonly", "no"),
    "KEYS": ("KEYS", "*"),
    "SCRIPT FLUSH": ("SCRIPT", "FLUSH"),
    "ACL SETUSER": ("ACL", "SETUSER", "sluice", "+@all"),
    "HSET other:": ("HSET", "other:data", "f", "v"),
    "HGET other:": ("HGET", "other:data", "f"),
    "DEL other:": ("DEL", "other:data"),
    "XADD other:": ("XADD", "other:stream", "*", "f", "v"),
    "SPUBLISH other:": ("SPUBLISH", "other:channel", "m"),
}


def sluice_rule() -> list[str]:
    """The rules of infra/redis-acl.conf's `user sluice` line, less its password."""
    (line,) = [line for line in RULE.read_text().splitlines() if line.startswith("user sluice ")]
    return [r for r in line.split()[2:] if not r.startswith("#")]


async def as_user(admin: Redis, server: RedisServer, rules: list[str]) -> tuple[str, Redis]:
    """The user `sluice` set to `rules` with a password: its URL and a client."""
    await admin.execute_command("ACL", "SETUSER", "sluice", "reset", ">battery-pw", *rules)
    url = f"redis://sluice:battery-pw@127.0.0.1:{server.port}/0"
    return url, connect(settings_for(url, retries=0))


async def refused(user: Redis) -> list[str]:
    """Which of FORBIDDEN Redis refused the user."""
    found = []
    for name, command in FORBIDDEN.items():
        try:
            await user.execute_command(*command)
        except redis.exceptions.ResponseError as exc:
            if "NOPERM" in str(exc) or "permission" in str(exc).lower():
                found.append(name)
    return found


async def core_scenario(url: str, user: Redis, folder: Path) -> dict[str, int]:
    """Publish, run, retry, dead-letter and delay under the user; the counts."""
    registry = load(SAMPLE)
    worker = start_worker(url, folder / "ledger", log=folder / "worker.log")
    try:
        client = Client(user, registry)
        await client.publish_many(
            "tasks",
            [
                Event(workspace="ws", data={"n": 1}),
                Event(workspace="ws", data={"n": 2}, delay_ms=300),  # promoted when due
                Event(workspace="ws", data={"n": 4, "mode": "raise"}),  # dead after its attempt
            ],
        )
        await client.publish(
            "retry-tasks", workspace="ws", data={"n": 3, "mode": "raise", "fail_times": 1}
        )

        async def done() -> bool:
            tasks, retried = (
                await total_counts(user, "tasks"),
                await total_counts(user, "retry-tasks"),
            )
            return tasks.completed == 2 and tasks.dead == 1 and retried.completed == 1

        await wait_until(done, 30.0, what="the core scenario under the ACL user")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    tasks, retried = await total_counts(user, "tasks"), await total_counts(user, "retry-tasks")
    completed, failed = tasks.completed + retried.completed, tasks.failed + retried.failed
    return {"completed": completed, "failed": failed, "dead": tasks.dead}


async def denials(admin: Redis) -> list[str]:
    """What Redis refused the user, by command or key, from its ACL log."""
    entries = await admin.execute_command("ACL", "LOG")
    found = []
    for entry in entries:
        fields = (
            dict(zip(entry[::2], entry[1::2], strict=True)) if isinstance(entry, list) else entry
        )
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        if fields.get("username") in ("sluice", b"sluice"):
            value = fields.get("object", b"")
            found.append(value.decode() if isinstance(value, bytes) else str(value))
    return found


async def test_sluice_runs_as_an_acl_user_with_only_what_it_needs(
    tmp_path: Path, figures: Report
) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    admin = connect(settings_for(server.url))
    try:
        rules = sluice_rule()
        url, user = await as_user(admin, server, rules)
        counts = await core_scenario(url, user, tmp_path)
        refused_core = await denials(admin)
        await admin.execute_command("ACL", "LOG", "RESET")
        stopped = await refused(user)
        await user.aclose()
    finally:
        await admin.aclose()
        server.stop()
    commands = sum(1 for r in rules if r.startswith("+"))
    tally = {"commands": commands, **counts, "refused_in_core": len(refused_core),
             "forbidden": len(FORBIDDEN), "refused": len(stopped)}  # fmt: skip
    figures(Tally("redis-acl", tally))
    assert set(refused_core) <= {"config|get"}, refused_core
    assert stopped == list(FORBIDDEN)


async def test_control_an_open_user_fails_the_refusal_check(
    tmp_path: Path, figures: Report
) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    admin = connect(settings_for(server.url))
    try:
        _, user = await as_user(admin, server, OPEN)
        stopped = await refused(user)
        await user.aclose()
    finally:
        await admin.aclose()
        server.stop()
    figures(Tally("redis-acl-control", {"forbidden": len(FORBIDDEN), "refused": len(stopped)}))
    assert stopped != list(FORBIDDEN)
