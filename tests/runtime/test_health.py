"""Health of workers and schedulers: a refused password ends them with one line,
an outage is logged again each period with its length, and the health port
answers 503 while Redis is paused and 200 once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
import redis.asyncio

from sluice.runtime.health import RedisHealth
from sluice.runtime.probe import check, serve_probe
from sluice.runtime.registry import load
from sluice.streams.connection import connect
from tests.conftest import settings_for
from tests.redis_server import RedisServer, free_port
from tests.runtime.helpers import SAMPLE, hosting, start_worker, wait_until


async def require_password(server: RedisServer) -> None:
    admin = redis.asyncio.Redis(port=server.port)
    await admin.config_set("requirepass", "s3cret")
    # A user who may only ping: its worker's first real command is denied.
    await admin.acl_setuser(
        "pinger", enabled=True, passwords=["+pw"], commands=["+ping"], keys=["*"]
    )
    await admin.aclose()


@pytest.mark.parametrize(
    ("role", "login", "said"),
    [
        ("worker", "", "Redis refused the connection: it requires a password and none was given"),
        ("scheduler", ":wrong@", "Redis refused the credentials: wrong password or user"),
        ("worker", "pinger:pw@", "Redis refused a command: the ACL user may not run it"),
    ],
)
async def test_a_process_redis_refuses_ends_with_one_line_saying_why(
    server: RedisServer, tmp_path: Path, role: str, login: str, said: str
) -> None:
    await require_password(server)
    log = tmp_path / "out.log"
    url = f"redis://{login}127.0.0.1:{server.port}/0"
    process = start_worker(url, tmp_path / "ledger", role=role, log=log, functions="tasks")
    try:
        code = await asyncio.to_thread(process.wait, 30)
    finally:
        process.kill()
    text = log.read_text()
    assert code == 1, text
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"sluice: {said}"), text
    assert "5 tries in a row" in last
    assert "Traceback" not in text
    assert "HELLO must be called" not in text
    assert "s3cret" not in text
    assert ":wrong@" not in text


async def test_an_outage_is_logged_again_each_period_with_its_length(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sluice.runtime.health")
    health = RedisHealth(server.url, report_every_s=0.2)
    functions = load(SAMPLE).select(["tasks"])
    async with hosting(server.url, functions, health=health):
        server.kill()

        async def reported_twice() -> bool:
            again = [r for r in caplog.records if "still unavailable" in r.getMessage()]
            return len(again) >= 2

        await wait_until(reported_twice, what="the outage to be logged again")
        server.start()

        async def back() -> bool:
            return health.available

        await wait_until(back, what="the worker to reach Redis again")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"redis unavailable at {server.url}") for m in messages)
    assert any(
        m.startswith(f"redis still unavailable at {server.url}, for ") and " s: " in m
        for m in messages
    )
    assert any(m.startswith(f"redis available again at {server.url}, after ") for m in messages)


@contextlib.asynccontextmanager
async def probed(server: RedisServer, port: int) -> AsyncIterator[RedisHealth]:
    """A worker and a scheduler of the sample `tasks` with the health port on `port`."""
    client = connect(settings_for(server.url))
    stop = asyncio.Event()
    functions = load(SAMPLE).select(["tasks"])
    async with hosting(server.url, functions, scheduler=True) as health:
        probe = asyncio.create_task(serve_probe(client, health, ("127.0.0.1", port), stop))
        try:
            yield health
        finally:
            stop.set()
            await probe
            await client.aclose()


async def sluice_check(port: int) -> int:
    """`sluice check`'s exit code, run beside this loop (which serves the probe)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice", "check",
        env={**environ, "SLUICE_HEALTH_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait()


async def test_the_health_port_answers_503_while_redis_is_paused_and_200_after(
    server: RedisServer,
) -> None:
    port = free_port()
    async with (
        probed(server, port) as health,
        aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
    ):

        async def worked() -> bool:
            return {"read", "promote"} <= set(health.last)

        await wait_until(worked, what="a read and a promotion")
        answer = await http.get("/readyz")
        body = await answer.json()
        assert answer.status == 200, body
        assert body["redis"] == "up"
        assert body["last_s"]["read"] < 10
        assert body["loop_lag_ms"] >= 0
        assert await sluice_check(port) == 0
        server.pause()
        try:
            # `sluice check` says the same (asked at once: each waits out the 1 s ping).
            answer, (ready, said) = await asyncio.gather(
                http.get("/readyz"), asyncio.to_thread(check, port)
            )
            body = await answer.json()
            assert answer.status == 503, body
            assert not ready
            assert msgspec.json.decode(said)["status"] == "unavailable"
            assert body["redis"] == "down"
            assert body["detail"] == "redis did not answer within 1 s"
            # Alive all the same: the loop turns.
            assert (await http.get("/healthz")).status == 200
        finally:
            server.resume()
        answer = await http.get("/readyz")
        assert answer.status == 200, await answer.text()
