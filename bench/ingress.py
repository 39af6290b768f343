"""Ingress requests per second under wrk (Debian's), beside the ceiling: a bare
aiohttp app that only reads the body and answers 202, on the same machine.

One ingress process (`sluice ingress`), one wrk thread with 64 connections, each
run `SECONDS` long; auth and validation included.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgspec

from bench.worker import SPEC
from runtime.ingress.auth import ApiKey, new_key
from tests.redis_server import free_port

SECONDS = 5
CONNECTIONS = 64


class Load(msgspec.Struct, frozen=True):
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return
        except OSError as exc:
            if getattr(exc, "code", None) == 404:  # the ceiling app has no /healthz
                return
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def _ms(text: str) -> float:
    """wrk's durations ("812.00us", "5.21ms", "1.02s", "1.10m") in ms."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"wrk printed a duration this cannot read: {text!r}")
    return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[found[2]]


def wrk(
    port: int, body: bytes, key: str, seconds: int = SECONDS, connections: int = CONNECTIONS
) -> Load:
    """POST `body` to the bench's no-op topic for `seconds` with wrk; its figures."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        )
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency",
             "-s", str(script),
             f"http://127.0.0.1:{port}/v1/events/noop"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50, p99 = _percentile(out, 50), _percentile(out, 99)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(requests, rate, p50, p99, int(errors[1]) if errors else 0)


def _percentile(out: str, p: int) -> float:
    """A latency percentile of wrk's distribution; NaN when no request completed."""
    found = re.search(rf"^\s+{p}%\s+(\S+)\s*$", out, re.MULTILINE)
    return _ms(found[1]) if found else math.nan


def event(n: int) -> dict[str, object]:
    return {"workspace": f"ws{n % 100}", "data": {"sent_ns": 0, "body": "x" * 40}}


INGRESS = [sys.executable, "-m", "runtime", "ingress"]
CEILING = [sys.executable, "-m", "bench.ceiling"]


def ingress_environ(url: str, port: int, key: ApiKey) -> dict[str, str]:
    """`sluice ingress` on `port`, with the bench's functions and one (admin) key."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    environ.update(
        REDIS_URL=url,
        SLUICE_FUNCTIONS=SPEC,
        SLUICE_LOG_LEVEL="WARNING",
        SLUICE_INGRESS_HOST="127.0.0.1",
        SLUICE_INGRESS_PORT=str(port),
        SLUICE_API_KEYS=msgspec.json.encode([key]).decode(),
    )
    return environ


def measure(url: str) -> tuple[Load, Load, Load]:
    """The ceiling, single-event and 100-event requests to one ingress process."""
    key, stored = new_key("bench", (), admin=True)
    single = json.dumps(event(0)).encode()
    batch = json.dumps([event(i) for i in range(100)]).encode()

    port = free_port()
    ceiling_app = subprocess.Popen([*CEILING, str(port)])
    try:
        wait_listening(port)
        ceiling = wrk(port, single, key)
    finally:
        ceiling_app.terminate()
        ceiling_app.wait(timeout=10)

    port = free_port()
    ingress = subprocess.Popen(INGRESS, env=ingress_environ(url, port, stored))
    try:
        wait_listening(port)
        one = wrk(port, single, key)
        many = wrk(port, batch, key)
    finally:
        ingress.terminate()
        ingress.wait(timeout=30)
    return ceiling, one, many
