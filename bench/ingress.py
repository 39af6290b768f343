"""Ingress requests per second under wrk (Debian's), beside the ceiling: a bare
aiohttp app that only reads the body and answers 202, on the same machine.

One ingress process (`sluice ingress`), one wrk thread with 64 connections, each
run `SECONDS` long; auth and validation included. The ceiling and single-event
runs alternate, `SPELLS` of each, and their medians are compared.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgspec

from bench.worker import SPEC
from sluice.runtime.ingress.auth import ApiKey, new_key
from sluice.runtime.testing.redis import free_port

SECONDS = 5
# Spells of the ceiling and of single-event publishes, alternately.
SPELLS = 3
CONNECTIONS = 64


class Load(msgspec.Struct, frozen=True):
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    # CPU time (user and system) the server process spent a request, in µs;
    # NaN when not measured. Steadier than the rate on a machine whose speed
    # drifts, as it does not count time the process waited for a core.
    cpu_us: float = math.nan


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    port: int,
    body: bytes,
    key: str,
    seconds: int = SECONDS,
    connections: int = CONNECTIONS,
    server: int | None = None,
) -> Load:
    """POST `body` to the bench's no-op topic for `seconds` with wrk; its figures,
    with the CPU time of process `server` a request when given."""
    before = cpu_s(server) if server is not None else 0.0
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
    cpu_us = (cpu_s(server) - before) / max(requests, 1) * 1e6 if server is not None else math.nan
    return Load(requests, rate, p50, p99, int(errors[1]) if errors else 0, cpu_us)


def _percentile(out: str, p: int) -> float:
    """A latency percentile of wrk's distribution; NaN when no request completed."""
    found = re.search(rf"^\s+{p}%\s+(\S+)\s*$", out, re.MULTILINE)
    return _ms(found[1]) if found else math.nan


def event(n: int) -> dict[str, object]:
    return {"workspace": f"ws{n % 100}", "data": {"sent_ns": 0, "body": "x" * 40}}


INGRESS = [sys.executable, "-m", "sluice", "ingress"]
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


def median_load(loads: list[Load]) -> Load:
    """The spell with the median rate (its own latencies with it), and the median
    CPU time a request."""
    middle = sorted(loads, key=lambda load: load.requests_per_s)[len(loads) // 2]
    return msgspec.structs.replace(middle, cpu_us=statistics.median(x.cpu_us for x in loads))


def measure(url: str, spells: int = SPELLS) -> tuple[Load, Load, Load]:
    """The ceiling, single-event and 100-event requests to one ingress process.

    The ceiling and the single-event ingress run side by side, idle in turn, and
    are loaded alternately, `spells` times each; the medians are reported. This
    machine's speed drifts between seconds, and one spell of each, seconds apart,
    moved their ratio from 46 % to 65 % between runs.
    """
    key, stored = new_key("bench", (), admin=True)
    single = json.dumps(event(0)).encode()
    batch = json.dumps([event(i) for i in range(100)]).encode()
    ceiling_port, ingress_port = free_port(), free_port()
    ceiling_app = subprocess.Popen([*CEILING, str(ceiling_port)])
    ingress = subprocess.Popen(INGRESS, env=ingress_environ(url, ingress_port, stored))
    try:
        wait_listening(ceiling_port)
        wait_listening(ingress_port)
        wrk(ingress_port, single, key, seconds=1)  # warm: the script loaded, decoders made
        ceilings, ones = [], []
        for _ in range(spells):
            ceilings.append(wrk(ceiling_port, single, key, server=ceiling_app.pid))
            ones.append(wrk(ingress_port, single, key, server=ingress.pid))
        many = wrk(ingress_port, batch, key)
    finally:
        for process in (ceiling_app, ingress):
            process.terminate()
            process.wait(timeout=30)
    return median_load(ceilings), median_load(ones), many
