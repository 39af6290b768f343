"""The Node client (clients/node): its node:test suite against one real `sluice
ingress` and redis-server, its generated types against the ingress's document,
and `sluice openapi` against what the ingress serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from sluice.runtime.ingress.auth import new_key
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "clients" / "node"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are missing (./local.sh test installs Debian's nodejs and npm)",
)


@dataclass(frozen=True)
class Ingress:
    url: str
    key: str
    admin_key: str
    redis: RedisServer
    log: Path


def _run(args: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, cwd=PACKAGE, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def _wait_listening(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the ingress answers (a process we just spawned: no event to await)."""
    for _ in range(600):
        if process.poll() is not None:
            pytest.fail(f"the ingress exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)  # polling a process just spawned: no event to await
    pytest.fail(f"the ingress did not answer:\n{log.read_text()}")


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    """One ingress for every Node test (no worker: published jobs stay where they are),
    its package built while it starts."""
    folder = tmp_path_factory.mktemp("node-client")
    redis = RedisServer(folder / "redis", appendonly=False)
    redis.start()
    key, stored = new_key("node", ("acme",), admin=False)
    admin_key, admin_stored = new_key("node-admin", (), admin=True)
    keys = folder / "keys.json"
    keys.write_bytes(msgspec.json.encode([stored, admin_stored]))
    port = free_port()
    log = folder / "ingress.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "REDIS_"))}
    environ.update(
        REDIS_URL=redis.url,
        SLUICE_INGRESS_HOST="127.0.0.1",
        SLUICE_INGRESS_PORT=str(port),
        SLUICE_API_KEYS_FILE=str(keys),
        # A paused Redis is answered 503 soon, not after the default 5 s.
        SLUICE_INGRESS_WRITE_TIMEOUT_S="0.5",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sluice", "ingress"], cwd=ROOT, env=environ, stdout=out,
            stderr=out,
        )  # fmt: skip
    try:
        # npm ci only when node_modules was not installed from this lock file.
        installed = PACKAGE / "node_modules" / ".package-lock.json"
        lock = PACKAGE / "package-lock.json"
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            _run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"])
        _run(["npm", "run", "build"])
        url = f"http://127.0.0.1:{port}"
        _wait_listening(url, process, log)
        yield Ingress(url, key, admin_key, redis, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
        redis.resume()
        redis.stop()


def test_the_node_suite_passes_against_a_real_ingress(ingress: Ingress) -> None:
    assert ingress.redis.process is not None
    environ = {
        **os.environ,
        "SLUICE_URL": ingress.url,
        "SLUICE_API_KEY": ingress.key,
        "SLUICE_ADMIN_KEY": ingress.admin_key,
        "SLUICE_REDIS_PID": str(ingress.redis.process.pid),
    }
    done = subprocess.run(
        ["npm", "test"], cwd=PACKAGE, env=environ, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, (
        f"{done.stdout}\n{done.stderr}\ningress log:\n{ingress.log.read_text()}"
    )
    assert "# fail 0" in done.stdout


def test_the_checked_in_types_are_generated_from_the_current_document(ingress: Ingress) -> None:
    """After a change to a route or a body: `npm run generate` in clients/node.
    (The fixture installed the package's node_modules.) From the document the
    ingress serves, which is what `sluice openapi` prints (the test below): no
    second Python process to start."""
    _run(["npm", "run", "generate", "--", f"{ingress.url}/openapi.json", "--check"])


def test_sluice_openapi_prints_what_the_ingress_serves(ingress: Ingress) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "sluice", "openapi"], cwd=ROOT, capture_output=True, check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")},
    ).stdout  # fmt: skip
    with urllib.request.urlopen(f"{ingress.url}/openapi.json", timeout=5) as served:
        assert json.loads(printed) == json.loads(served.read())
