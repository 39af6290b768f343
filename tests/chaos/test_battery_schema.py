"""The fault battery, the HTTP contract: schemathesis against the ingress's own
/openapi.json, every operation with generated requests (valid and not), against
a real `sluice ingress` on a real redis-server, with an admin key (so every
route is reached past its key check).

The bar: no server error (5xx) and every answer matches the document (status,
content type, body schema). Run as schemathesis's CLI in a subprocess: its
pytest plugin would run under this suite's settings (warnings as errors, one
event loop per session). The bounded run gives each operation a few examples
with a fixed seed; `--long` runs every phase (coverage, stateful) with more.

The control: the same run against an ingress whose document was changed to
promise a field `GET /healthz` never sends; schemathesis must report it. Last,
the regression test of what it found (RELIABILITY.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from sluice.runtime.ingress.auth import new_key
from sluice.streams.connection import Redis
from tests.chaos.conftest import Reported
from tests.chaos.security import Tally
from tests.ingress.conftest import start_api
from tests.redis_server import RedisServer, free_port
from tests.runtime.helpers import start_worker, wait_until

pytestmark = pytest.mark.chaos

Report = Callable[[Reported], None]

CHECKS = ",".join(("not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_schema_conformance"))  # fmt: skip


class Ingress:
    """A `sluice ingress` process with one admin key."""

    def __init__(self, url: str, folder: Path, environ: dict[str, str] | None = None) -> None:
        self.port = free_port()
        key, stored = new_key("admin", (), admin=True)
        self.key = key
        (folder / "keys.json").write_bytes(msgspec.json.encode([stored]))
        self.process = start_worker(url, folder / "unused", role="ingress",
                                    log=folder / "ingress.log", environ={
            "SLUICE_FUNCTIONS": "functions:FUNCTIONS",
            "SLUICE_INGRESS_HOST": "127.0.0.1",
            "SLUICE_INGRESS_PORT": str(self.port),
            "SLUICE_API_KEYS_FILE": str(folder / "keys.json"),
            **(environ or {}),
        })  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


@pytest.fixture
def ingress(tmp_path: Path) -> Iterator[Ingress]:
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    started = Ingress(server.url, tmp_path)
    yield started
    started.stop()
    server.stop()


def schemathesis(
    schema: str, base: str, key: str, folder: Path, long_run: bool
) -> tuple[int, str, dict[str, int]]:
    """Run schemathesis's CLI; its exit code, output and figures."""
    if long_run:
        bounds = ["--max-examples", "50"]
    else:
        bounds = ["--max-examples", "5", "--phases", "examples,fuzzing", "--seed", "19"]
    args = [
        str(Path(sys.executable).parent / "schemathesis"), "run", schema, "--url", base,
        "--header", f"Authorization: Bearer {key}", "--checks", CHECKS,
        "--wait-for-schema", "30", "--request-timeout", "10", "--no-color",
        "--report", "junit", "--report-junit-path", str(folder / "junit.xml"), *bounds,
    ]  # fmt: skip
    # In `folder`: its example database (.schemathesis/) stays out of the repository.
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, check=False, cwd=folder
    )
    output = done.stdout + done.stderr
    (folder / "schemathesis.out").write_text(output)
    return done.returncode, output, figures_of(output)


def figures_of(output: str) -> dict[str, int]:
    """The summary's counts: operations tested, cases generated, failures found."""

    def count(pattern: str) -> int:
        found = re.search(pattern, output)
        return int(found[1]) if found else -1

    return {
        "operations": count(r"Tested: (\d+)"),
        "cases": count(r"(\d+) generated"),
        "failures": max(count(r"found (\d+) unique failure"), 0),
        "server_errors": max(count(r"Server error: (\d+)"), 0),
    }


async def test_the_ingress_keeps_its_openapi_document(
    ingress: Ingress, tmp_path: Path, long_run: bool, figures: Report
) -> None:
    base = f"http://127.0.0.1:{ingress.port}"
    code, output, counts = schemathesis(f"{base}/openapi.json", base, ingress.key, tmp_path,
                                        long_run)  # fmt: skip
    figures(Tally("schemathesis", counts))
    assert code == 0, output[-6000:]
    assert counts["failures"] == 0
    assert counts["operations"] > 40


async def test_control_a_document_promising_more_than_is_sent_fails(
    ingress: Ingress, tmp_path: Path, figures: Report
) -> None:
    # The ingress's own document, with a required field added to /healthz's answer.
    base = f"http://127.0.0.1:{ingress.port}"
    document = await served_document(base)
    ok = document["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]
    ok["schema"] = {"allOf": [ok["schema"], {"type": "object", "required": ["uptime_s"]}]}
    only = {**document, "paths": {"/healthz": document["paths"]["/healthz"]}}
    (tmp_path / "openapi.json").write_text(json.dumps(only))
    schema = str(tmp_path / "openapi.json")
    code, output, counts = schemathesis(schema, base, ingress.key, tmp_path, long_run=False)
    figures(Tally("schemathesis-control", counts))
    assert code != 0, output[-3000:]
    assert counts["failures"] >= 1, output[-3000:]


async def served_document(base: str) -> Any:
    async def answers() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as got:
                return got.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await wait_until(answers, 30.0, what="the ingress to answer")
    async with aiohttp.ClientSession() as session, session.get(f"{base}/openapi.json") as got:
        return await got.json()


async def test_a_page_of_more_jobs_than_redis_connections_is_answered(
    tmp_path: Path, redis: Redis, shared_server: RedisServer
) -> None:
    # Found by schemathesis's run: GET /v1/jobs with 100 jobs to show reads them
    # with 100 concurrent calls, and redis-py's plain asyncio pool (64 connections)
    # refused the 65th (MaxConnectionsError), answered 503; the pool now waits.
    api = await start_api(redis, shared_server.url)
    try:
        hour = 3_600_000
        events = [{"workspace": "acme", "data": {"n": i}, "delay_ms": hour} for i in range(100)]
        assert (await api.post("/v1/events/tasks", events)).status == 202
        page = await api.http.get("/v1/jobs?function=tasks&state=delayed&limit=100",
                                  headers=api.auth("acme"))  # fmt: skip
        assert page.status == 200, await page.text()
        assert len((await page.json())["jobs"]) == 100
    finally:
        await api.http.close()
