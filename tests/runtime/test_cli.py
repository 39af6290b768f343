"""`sluice dev` as a newcomer runs it: the demo's jobs flow, a delayed one
is promoted by the embedded scheduler, SIGTERM exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from streams.connection import Redis
from tests.redis_server import RedisServer
from tests.runtime.helpers import wait_completed


def start_dev(url: str, log: Path) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    environ.update(REDIS_URL=url, SLUICE_DEMO="true", SLUICE_BLOCK_MS="500")
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "runtime", "dev"], env=environ, stdout=out, stderr=out
        )


async def test_dev_runs_the_demo_and_stops_cleanly(
    redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    dev = start_dev(shared_server.url, log)
    try:
        # Three at once and one 5 s later each.
        await wait_completed(redis, "sms.send", 4)
        await wait_completed(redis, "email.send", 4)
    finally:
        dev.send_signal(signal.SIGTERM)
        code = dev.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text
    assert "demo: published" in text
    assert "sms " in text
    assert "RISK OF LOSING JOBS: appendonly is no" in text  # the shared test server has no AOF
