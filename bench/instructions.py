"""`python -m bench.instructions [limits|tracing|ingress]`: what a feature costs a
drain, in instructions per job, or the ingress beside its ceiling, per request.

This machine's speed drifts by a third between runs, so rates and CPU seconds
cannot tell a 12 % cost from an 18 % one. Callgrind counts instructions, the
same for the same work whatever else the machine does. The worker and
redis-server both run under it; the count covers only the drain: the function
is paused while its jobs are published and the worker starts, both processes'
counters are zeroed, then it is resumed and counted until the last job settles.
Under valgrind a drain takes minutes, in which the worker's timed work
(reads that block and time out, the pause flag's look each second, reclaiming,
heartbeats, metric flushes) would add as much as the jobs: it is counted
afterwards over an idle spell of IDLE_S, and its rate times the drain's length
taken off. What remains uncertain is how the drain went (jobs per read, calls
per settle), which is printed beside the counts.

`ingress` counts one process per request under wrk: the bare aiohttp app of
bench.ceiling, then `sluice ingress` taking single-event publishes. Their ratio
is what the rate ratio would be with the process alone on a core. redis-server
behind the ingress is counted too: it shares the cores. Two cautions: slowed by
valgrind, the ingress coalesces fewer requests a script call than it does at
full speed, so its share of each call's cost is larger here; and Redis's timed
housekeeping (serverCron) adds several thousand instructions a request at the
rate valgrind allows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import msgspec

from bench.__main__ import publish_rate
from bench.ingress import (
    CEILING,
    CONNECTIONS,
    INGRESS,
    event,
    ingress_environ,
    wait_listening,
    wrk,
)
from bench.worker import SPEC, start_worker, stop, until_completed
from sluice.runtime import Client
from sluice.runtime.ingress.auth import new_key
from sluice.runtime.registry import load
from sluice.runtime.testing.redis import RedisServer, free_port
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.keys import PartitionKeys
from sluice.streams.pause import set_paused

IDLE_S = 20.0


class Drained(msgspec.Struct, frozen=True):
    """One function drained by one worker, with extra environment for the worker."""

    function: str
    environ: dict[str, str] = {}


# Each comparison: the drain without the feature, then with it.
COMPARISONS = {
    # Batch handlers over 100 workspaces, with a per-workspace limit never hit.
    "limits": (Drained("noop-batch"), Drained("noop-batch-limited")),
    # Single-job handlers, with every span sampled through the batch processor.
    "tracing": (Drained("noop"), Drained("noop", {"BENCH_TRACING": "1"})),
}


def callgrind(out: Path) -> tuple[str, ...]:
    return ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")


def control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


def totals(out: Path, part: int) -> int:
    """The instructions in dump `part` of a process (`callgrind_control -d` writes `out.N`)."""
    match = re.search(
        r"^(?:summary|totals): (\d+)", Path(f"{out}.{part}").read_text(), re.MULTILINE
    )
    assert match, f"no totals in {out}.{part}"
    return int(match[1])


async def calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def drain_instructions(drained: Drained, n: int, folder: Path) -> tuple[int, int]:
    """(worker, redis-server) instructions spent draining `n` queued jobs."""
    server = RedisServer(folder / "redis", appendonly=False, wrapper=callgrind(folder / "redis.cg"))
    server.start()
    redis = connect(RedisSettings(url=server.url))
    client = Client(redis, load(SPEC))
    keys = PartitionKeys(drained.function, 0)
    try:
        await set_paused(redis, keys, True)
        await publish_rate(client, drained.function, n)
        looks = await calls(redis, "exists")
        worker = start_worker(
            server.url,
            drained.function,
            drained.environ,
            wrapper=callgrind(folder / "worker.cg"),
        )
        try:
            # The paused worker looks at the flag once a second: two looks, and it is up.
            while await calls(redis, "exists") < looks + 2:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert server.process is not None
            pids = (worker.pid, server.process.pid)
            for pid in pids:
                control("-z", pid)
            await redis.config_resetstat()
            started = time.monotonic()
            await set_paused(redis, keys, False)
            await until_completed(redis, keys, n, 0.5)
            for pid in pids:
                control("-d", pid)
            drain_s = time.monotonic() - started
            reads, scripts = await calls(redis, "xreadgroup"), await calls(redis, "evalsha")
            await asyncio.sleep(IDLE_S)  # the idle spell, measured by its length
            for pid in pids:
                control("-d", pid)
        finally:
            stop(worker)
        drain = [totals(folder / f"{p}.cg", 1) for p in ("worker", "redis")]
        idle = [totals(folder / f"{p}.cg", 2) / IDLE_S for p in ("worker", "redis")]
        counts = (round(drain[0] - idle[0] * drain_s), round(drain[1] - idle[1] * drain_s))
        print(
            f"{drained.function:<20} {drained.environ or ''!s:<24} "
            f"worker {counts[0] / n:>8,.0f}  redis {counts[1] / n:>8,.0f} instructions/job; "
            f"{n / reads:.1f} jobs a read, {scripts / reads:.1f} scripts a read; "
            f"idle work taken off: {idle[0] * drain_s / n:,.0f} + {idle[1] * drain_s / n:,.0f}"
        )
        return counts
    finally:
        await redis.aclose()
        server.stop()


def served_instructions(
    command: list[str],
    environ: dict[str, str],
    port: int,
    key: str,
    folder: Path,
    beside: RedisServer | None = None,
) -> tuple[float, float]:
    """Instructions per single-event publish of an HTTP server run under callgrind,
    and of `beside` (a redis-server under callgrind too) in the same spell."""
    body = json.dumps(event(0)).encode()
    out = folder / "server.cg"
    server = subprocess.Popen([*callgrind(out), *command], env=environ, stderr=subprocess.DEVNULL)
    pids = [server.pid]
    if beside is not None:
        assert beside.process is not None
        pids.append(beside.process.pid)
    try:
        wait_listening(port, 120.0)
        wrk(port, body, key, seconds=10, connections=CONNECTIONS)  # warm: caches, scripts
        for pid in pids:
            control("-z", pid)
        load = wrk(port, body, key, seconds=20, connections=CONNECTIONS)
        for pid in pids:
            control("-d", pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert load.requests, "no request completed: is the machine busy with something else?"
    assert load.non_2xx == 0, f"{load.non_2xx} requests failed"
    redis = 0.0 if beside is None else totals(beside.directory / "redis.cg", 1) / load.requests
    return totals(out, 1) / load.requests, redis


async def ingress(keep: Path | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = keep or Path(scratch)
        redis_folder = folder / "redis"
        server = RedisServer(
            redis_folder, appendonly=False, wrapper=callgrind(redis_folder / "redis.cg")
        )
        server.start()
        try:
            key, stored = new_key("bench", (), admin=True)
            port = free_port()
            (folder / "ceiling").mkdir(parents=True, exist_ok=True)
            (folder / "ingress").mkdir(parents=True, exist_ok=True)
            ceiling, _ = served_instructions(
                [*CEILING, str(port)], dict(os.environ), port, key, folder / "ceiling"
            )
            port = free_port()
            environ = ingress_environ(server.url, port, stored)
            served, redis = served_instructions(
                INGRESS, environ, port, key, folder / "ingress", beside=server
            )
        finally:
            server.stop()
    print(f"ceiling {ceiling:>10,.0f} instructions/request")
    print(f"ingress {served:>10,.0f} instructions/request, and redis-server {redis:,.0f}")
    print(f"ingress: {ceiling / served:.0%} of the ceiling")
    # Sharing the cores with it, Redis takes from the ingress what it spends.
    print(f"ingress and redis-server: {ceiling / (served + redis):.0%} of the ceiling")


async def compare(name: str, n: int, keep: Path | None, rounds: int) -> None:
    """Each drain `rounds` times, interleaved; the medians compared (how a drain
    goes still moves its count by a few percent)."""
    runs: list[list[float]] = [[], []]
    for r in range(rounds):
        for i, drained in enumerate(COMPARISONS[name]):
            if keep:  # the dumps stay, for callgrind_annotate
                counts = await drain_instructions(drained, n, keep / f"{name}-{i}-{r}")
            else:
                with tempfile.TemporaryDirectory() as folder:
                    counts = await drain_instructions(drained, n, Path(folder))
            runs[i].append(sum(counts) / n)
    without, with_ = (statistics.median(r) for r in runs)
    print(
        f"{name}: {with_ / without - 1:+.1%} instructions per job "
        f"(medians of {rounds}: {without:,.0f} -> {with_:,.0f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "comparison", choices=[*sorted(COMPARISONS), "ingress"], nargs="?", default="limits"
    )
    parser.add_argument("--jobs", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=1, help="drains of each, medians compared")
    parser.add_argument("--keep", type=Path, help="a folder to keep callgrind's dumps in")
    args = parser.parse_args()
    if args.comparison == "ingress":
        asyncio.run(ingress(args.keep))
    else:
        asyncio.run(compare(args.comparison, args.jobs, args.keep, args.rounds))
