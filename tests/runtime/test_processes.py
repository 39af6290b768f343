"""`sluice worker --processes N`: a supervisor of N worker processes that restarts
one that dies and passes SIGTERM on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.runtime.supervisor import Supervisor
from sluice.streams.connection import Redis, connect
from tests.conftest import settings_for
from tests.redis_server import RedisServer, free_port
from tests.runtime.helpers import (
    SAMPLE,
    blocked_readers,
    ledger_pids,
    read_ledger,
    start_worker,
    total_counts,
    wait_completed,
    wait_until,
)


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux keeps the list in /proc)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def alive(pid: int) -> bool:
    """Whether `pid` runs: neither gone nor a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def reading(redis: Redis, supervisor: subprocess.Popen[bytes]) -> Callable[[], Awaitable[bool]]:
    """Whether both worker processes wait in XREADGROUP (or the supervisor exited)."""

    async def check() -> bool:
        return supervisor.poll() is not None or await blocked_readers(redis) == 2

    return check


async def publish(redis: Redis, n: int, sleep_ms: int) -> set[str]:
    client = Client(redis, load(SAMPLE))
    events = [Event(workspace=f"ws{i % 5}", data={"n": i, "sleep_ms": sleep_ms}) for i in range(n)]
    return {r.id for r in await client.publish_many("tasks", events)}


async def test_two_processes_share_the_jobs_and_stop_together_on_sigterm(
    redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> None:
    ledger, log = tmp_path / "ledger", tmp_path / "log"
    supervisor = start_worker(
        shared_server.url, ledger, functions="tasks", options=["--processes", "2"], log=log
    )
    try:
        await wait_until(reading(redis, supervisor), what="two processes reading", timeout_s=20)
        assert supervisor.poll() is None, log.read_text()
        workers = children(supervisor.pid)
        assert len(workers) == 2, log.read_text()
        published = await publish(redis, 400, sleep_ms=2)
        await wait_completed(redis, "tasks", 400)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0, log.read_text()
    assert not any(alive(pid) for pid in workers)
    assert set(read_ledger(ledger)) == published
    assert ledger_pids(ledger) == {str(pid) for pid in workers}


async def test_a_killed_worker_process_is_restarted_and_nothing_is_lost(
    redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> None:
    ledger, log = tmp_path / "ledger", tmp_path / "log"
    supervisor = start_worker(
        shared_server.url, ledger, functions="tasks", options=["--processes", "2"], log=log
    )
    try:
        await wait_until(reading(redis, supervisor), what="two processes reading", timeout_s=20)
        assert supervisor.poll() is None, log.read_text()
        first = children(supervisor.pid)
        published = await publish(redis, 600, sleep_ms=5)

        async def under_way() -> bool:
            return len(read_ledger(ledger)) >= 100

        await wait_until(under_way, what="a sixth of the jobs handled")
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            now = children(supervisor.pid)
            return len(now) == 2 and victim not in now

        await wait_until(replaced, what="the killed process to be replaced", timeout_s=20)
        # The killed process's jobs come back after the visibility timeout.
        await wait_completed(redis, "tasks", 600, timeout_s=90)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0, log.read_text()
    assert set(read_ledger(ledger)) == published
    final = await total_counts(redis, "tasks")
    assert (final.waiting, final.active, final.failed, final.dead) == (0, 0, 0, 0)
    assert f"(pid {victim}) exited with -9" in log.read_text()


async def test_processes_that_keep_failing_to_start_stop_the_supervisor() -> None:
    def command(slot: int) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(3)"]

    supervisor = Supervisor(command, 2, grace_s=1.0, backoff_base_s=0.01, max_failures=3)
    stop = asyncio.Event()
    async with asyncio.timeout(20):
        assert await supervisor.run(stop) == 1
    # One slot's third quick failure ends the run; the other slot is stopped, not restarted.
    assert 3 <= supervisor.started <= 6


async def test_a_stop_while_a_restart_waits_is_a_clean_stop(tmp_path: Path) -> None:
    # The first child fails; a restarted one (should the jittered wait be short)
    # stops cleanly on SIGTERM.
    script = (
        "import pathlib, signal, sys, time\n"
        f"marker = pathlib.Path({str(tmp_path / 'failed')!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "time.sleep(60)\n"
    )

    def command(slot: int) -> list[str]:
        return [sys.executable, "-c", script]

    # The restart waits up to a minute, and the stop comes meanwhile.
    supervisor = Supervisor(command, 1, grace_s=1.0, backoff_base_s=60.0, backoff_cap_s=60.0)
    stop = asyncio.Event()
    run = asyncio.create_task(supervisor.run(stop))

    async def failed() -> bool:
        first = supervisor.live.get(0)
        return first is not None and first.returncode is not None

    await wait_until(failed, what="the first child to fail")
    stop.set()
    async with asyncio.timeout(10):
        assert await run == 0


async def test_worker_processes_stop_when_their_supervisor_is_killed(
    redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> None:
    supervisor = start_worker(
        shared_server.url, tmp_path / "ledger", functions="tasks", options=["--processes", "2"]
    )
    try:
        await wait_until(reading(redis, supervisor), what="two processes reading", timeout_s=20)
        workers = children(supervisor.pid)
    finally:
        supervisor.kill()
        supervisor.wait()

    async def gone() -> bool:
        return not any(alive(pid) for pid in workers)

    await wait_until(gone, what="the orphaned worker processes to stop", timeout_s=20)


async def test_a_child_stopped_before_it_handles_sigterm_stopped_cleanly() -> None:
    # A worker SIGTERMed while still importing ends by the signal: it held nothing.
    def command(slot: int) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    supervisor = Supervisor(command, 2, grace_s=5.0)
    stop = asyncio.Event()
    run = asyncio.create_task(supervisor.run(stop))

    async def started() -> bool:
        return supervisor.started == 2

    await wait_until(started, what="both children to start")
    stop.set()
    async with asyncio.timeout(10):
        assert await run == 0


@contextlib.asynccontextmanager
async def private_redis(server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(settings_for(server.url))
    try:
        yield client
    finally:
        await client.aclose()


async def asked(http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    """The health port's status and body (0 and None while nothing listens)."""
    try:
        async with http.get(path) as answer:
            return answer.status, await answer.json()
    except aiohttp.ClientConnectionError:
        return 0, None


async def test_one_health_port_is_ready_only_while_every_worker_process_is(
    server: RedisServer, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "log"
    supervisor = start_worker(
        server.url, tmp_path / "ledger", functions="tasks", options=["--processes", "2"],
        log=log, environ={"SLUICE_HEALTH_PORT": str(port)},
    )  # fmt: skip
    try:
        async with (
            private_redis(server) as redis,
            aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
        ):
            await wait_until(reading(redis, supervisor), what="two processes reading", timeout_s=20)

            async def ready() -> bool:
                return supervisor.poll() is not None or (await asked(http, "/readyz"))[0] == 200

            await wait_until(ready, what="the health port to answer ready", timeout_s=20)
            assert supervisor.poll() is None, log.read_text()
            workers = children(supervisor.pid)
            status, body = await asked(http, "/readyz")
            assert status == 200, body
            assert sorted(p["pid"] for p in body["processes"]) == sorted(workers)
            assert {p["probe"]["redis"] for p in body["processes"]} == {"up"}

            # One process frozen: the pod is neither ready nor alive.
            victim = min(workers)
            os.kill(victim, signal.SIGSTOP)
            try:
                (status, body), (live, _) = await asyncio.gather(
                    asked(http, "/readyz"), asked(http, "/healthz")
                )
            finally:
                os.kill(victim, signal.SIGCONT)
            assert status == 503, body
            assert f"(pid {victim})" in body["detail"]
            assert live == 503
            await wait_until(ready, what="ready again once the process runs")

            # Redis paused: not ready, but alive (a restart would not bring Redis back).
            server.pause()
            try:
                (status, body), (live, _) = await asyncio.gather(
                    asked(http, "/readyz"), asked(http, "/healthz")
                )
            finally:
                server.resume()
            assert status == 503, body
            assert {p["probe"]["redis"] for p in body["processes"]} == {"down"}
            assert live == 200
            await wait_until(ready, what="ready again once Redis answers")

            # One process killed: not ready until it is restarted, alive meanwhile
            # (the supervisor restarts it; so would a pod restart, only slower).
            os.kill(victim, signal.SIGKILL)
            (status, body), (live, _) = await asyncio.gather(
                asked(http, "/readyz"), asked(http, "/healthz")
            )
            assert status == 503, body
            assert live == 200
            await wait_until(ready, what="ready again once the process is restarted", timeout_s=20)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0, log.read_text()


async def test_a_busy_health_port_stops_the_supervisor_before_any_process_starts(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervisor = start_worker(
            None, tmp_path / "ledger", functions="tasks", options=["--processes", "2"], log=log,
            environ={"SLUICE_HEALTH_PORT": str(port), "REDIS_URL": "redis://127.0.0.1:1/0"},
        )  # fmt: skip
        code = await asyncio.to_thread(supervisor.wait, 30)
    text = log.read_text()
    assert code == 1, text
    assert text.strip().splitlines() == [
        f"sluice: cannot listen on 0.0.0.0:{port} (SLUICE_HEALTH_PORT): address already in use"
    ]
