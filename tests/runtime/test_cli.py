"""`sluice dev` as a newcomer runs it: the demo's jobs flow, a delayed one
is promoted by the embedded scheduler, the ingress takes a publish with the key
it printed, SIGTERM exits 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio

from sluice.runtime import Client
from sluice.runtime.cli import main
from sluice.runtime.registry import load
from sluice.runtime.settings import PLATFORM_PORT, REDIS_PARTS, VARIABLES
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.tagged import TagCounts
from tests.redis_server import RedisServer, free_port
from tests.runtime.helpers import SAMPLE, start_worker, wait_completed, wait_until


def start_dev(url: str, log: Path, port: int) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    environ.update(
        REDIS_URL=url, SLUICE_DEMO="true", SLUICE_BLOCK_MS="500", SLUICE_INGRESS_PORT=str(port)
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sluice", "dev"], env=environ, stdout=out, stderr=out
        )


async def test_dev_runs_the_demo_and_stops_cleanly(
    redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    port = free_port()
    dev = start_dev(shared_server.url, log, port)
    try:
        # Three at once and one 5 s later each.
        await wait_completed(redis, "sms.send", 4)
        await wait_completed(redis, "email.send", 4)
        (key,) = re.findall(r"admin API key for this run: (sk_\S+)", log.read_text())
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            answer = await http.post(
                "/v1/events/sms.send",
                json={"workspace": "me", "data": {"to": "+15550100", "body": "hi"}},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status == 202, await answer.text()
        await wait_completed(redis, "sms.send", 5)

        # The demo's booking: its handler scheduled the 15-minute reminders through
        # the worker's client (current_client), the earlier ones being past.
        async def reminded() -> bool:
            page = await Client(redis, load("functions:FUNCTIONS")).jobs.page(
                "sms.send", "delayed", workspace="demo"
            )
            return [j.key for j in page.jobs if j.key] == ["booking:demo-1:sms:900"]

        await wait_until(reminded, what="the demo booking's reminder")

        # The demo's campaign: its three contacts' SMS and, a day later, emails.
        async def launched() -> bool:
            jobs = Client(redis, load("functions:FUNCTIONS")).jobs
            return await jobs.tag_counts("campaign:demo", workspace="demo") == {
                "sms.send": TagCounts(delayed=3),
                "email.send": TagCounts(delayed=3),
            }

        await wait_until(launched, what="the demo campaign's messages")
    finally:
        dev.send_signal(signal.SIGTERM)
        code = dev.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text
    assert "demo: published" in text
    assert "sms " in text
    assert "RISK OF LOSING JOBS: appendonly is no" in text  # the shared test server has no AOF


async def test_no_log_line_of_a_process_start_holds_the_redis_password(
    server: RedisServer, tmp_path: Path
) -> None:
    """The password in the URL's query (redis-py reads it there too), never in a log."""
    admin = redis.asyncio.Redis(port=server.port)
    await admin.config_set("requirepass", "s3cret-pw")
    await admin.aclose()
    log = tmp_path / "scheduler.log"
    process = start_worker(
        f"{server.url}?password=s3cret-pw", tmp_path / "ledger", role="scheduler", log=log
    )
    try:

        async def reported() -> bool:
            return "maxmemory-policy" in log.read_text()

        await wait_until(reported, what="the scheduler to report the server")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    text = log.read_text()
    assert "password=***" in text
    assert "s3cret" not in text


async def test_a_worker_configured_by_redis_host_port_user_password_db_runs_a_job(
    server: RedisServer, tmp_path: Path
) -> None:
    """The seed apps' variables, an ACL user whose password needs quoting, database 3;
    the log shows the URL built from them with the password masked."""
    password = "p@ss:w/rd"
    admin = redis.asyncio.Redis(port=server.port)
    await admin.acl_setuser(
        "app", enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
        commands=["+@all"],
    )  # fmt: skip
    await admin.config_set("requirepass", "admin-only")  # the default user is locked out
    await admin.aclose()
    log = tmp_path / "worker.log"
    environ = {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(server.port),
        "REDIS_USER": "app",
        "REDIS_PASSWORD": password,
        "REDIS_DB": "3",
    }
    worker = start_worker(None, tmp_path / "ledger", functions="tasks", log=log, environ=environ)
    url = f"redis://127.0.0.1:{server.port}/3"
    client = connect(RedisSettings(url=url, username="app", password=password))
    try:
        await Client(client, load(SAMPLE)).publish("tasks", workspace="w", data={"n": 1})
        await wait_completed(client, "tasks", 1)

        async def reported() -> bool:
            return "maxmemory-policy" in log.read_text()

        await wait_until(reported, what="the worker to report the server")
    finally:
        await client.aclose()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    text = log.read_text()
    assert f"redis://app:***@127.0.0.1:{server.port}/3" in text
    assert "p@ss" not in text
    assert "p%40ss" not in text


def test_redis_host_in_conflict_with_redis_url_is_a_one_line_start_up_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sluice", "scheduler"],
        env={"REDIS_URL": "redis://a:6379/0", "REDIS_HOST": "b", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "sluice: REDIS_URL and REDIS_HOST disagree; set REDIS_URL or the parts, not both\n"
    )


def test_sluice_tells_its_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "--version"], capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"sluice \d+\.\d+\.\d+\n", done.stdout)


def help_of(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_every_commands_help_lists_the_settings_it_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = {
        name: set(re.findall(r"\b(?:SLUICE|REDIS)_[A-Z_]+\b|\bPORT\b", help_of(capsys, *cmd)))
        for name, cmd in {
            "worker": ["worker"],
            "scheduler": ["scheduler"],
            "ingress": ["ingress"],
            "dev": ["dev"],
            "schedules": ["schedules", "add"],
            "check": ["check"],
            "openapi": ["openapi"],
        }.items()
    }
    assert shown.pop("check") == {"SLUICE_HEALTH_PORT"}
    assert shown.pop("openapi") == {"SLUICE_FUNCTIONS"}
    every = set(VARIABLES) | set(REDIS_PARTS) | {PLATFORM_PORT}
    # Each command names the Redis connection; `sluice dev` runs every role, so every setting.
    for name, variables in shown.items():
        assert {"REDIS_URL", "REDIS_PASSWORD", "SLUICE_REDIS_CALL_TIMEOUT_S"} <= variables, name
    assert shown["dev"] == every
    assert {"SLUICE_BLOCK_MS", "SLUICE_GRACE_S", "SLUICE_SMS_PROVIDER"} <= shown["worker"]
    assert "SLUICE_INGRESS_PORT" not in shown["worker"]
    assert "SLUICE_SCHEDULER_RECHECK_S" in shown["scheduler"]
    assert "SLUICE_BLOCK_MS" not in shown["scheduler"]
    assert "SLUICE_HEALTH_PORT" in shown["scheduler"]
    assert {"SLUICE_INGRESS_PORT", "PORT", "SLUICE_API_KEYS_FILE"} <= shown["ingress"]
    assert "SLUICE_BLOCK_MS" not in shown["ingress"]
    assert "SLUICE_FUNCTIONS" in shown["schedules"]
    assert "reads no settings" in help_of(capsys, "keys", "create")


SLOW_APP = """
import pathlib, time
pathlib.Path("importing").touch()
time.sleep(60)  # a deployment's module slow to import: the window a stop must not kill in
FUNCTIONS = []
"""


@pytest.mark.parametrize("command", ["python -m sluice", "sluice"])
def test_a_process_stopped_while_it_starts_exits_cleanly(tmp_path: Path, command: str) -> None:
    # A rollout overtaken by the next stops processes still importing: they hold
    # nothing yet, so SIGTERM is a clean exit (0), not a death by signal (-15).
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    program = (
        [sys.executable, "-m", "sluice"]
        if command != "sluice"
        else [str(Path(sys.executable).parent / "sluice")]
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    with subprocess.Popen(
        [*program, "--app", "slow_app:FUNCTIONS", "scheduler"],
        cwd=tmp_path,
        env={**environ, "REDIS_URL": "redis://127.0.0.1:1/0"},
        stderr=subprocess.PIPE,
    ) as process:
        try:
            deadline = time.monotonic() + 30
            # Polled: the marker is another process's file.
            while not (tmp_path / "importing").exists():
                assert time.monotonic() < deadline, "the app was never imported"
                assert process.poll() is None, "it ended before importing the app"
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=10)
            assert process.returncode == 0
            assert b"Traceback" not in err
        finally:
            if process.poll() is None:
                process.kill()
