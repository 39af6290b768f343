"""`./local.sh bench [--json FILE]`: Sluice's rates beside the raw Redis limit of the same run.

Everything runs on one private redis-server started here. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import msgspec
import uvloop

from bench.cluster import cluster_drains
from bench.functions import Ping
from bench.ingress import measure as measure_ingress
from bench.limits import limit_held
from bench.raw import CHUNK, raw_drain_rate, raw_publish_rate
from bench.scheduling import delayed_bytes_per_job, lateness, promote_rate
from bench.worker import SPEC, start_worker, stop, until_completed
from sluice.runtime import Client, Event
from sluice.runtime.registry import load
from sluice.runtime.testing.redis import RedisServer
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.keys import PartitionKeys


async def publish_rate(client: Client, function: str, n: int) -> float:
    """Bulk publish `n` events to `function` in CHUNK-sized calls; returns events/s."""
    events = [
        Event(workspace=f"ws{i % 100}", data=Ping(sent_ns=0, body="x" * 40)) for i in range(n)
    ]
    start = time.perf_counter()
    for offset in range(0, n, CHUNK):
        await client.publish_many(function, events[offset : offset + CHUNK])
    return n / (time.perf_counter() - start)


class Drain(msgspec.Struct, frozen=True):
    jobs_per_s: float
    # CPU time of the worker process and of Redis per job: steadier than the rate
    # on a machine whose speed drifts, so costs are compared by it.
    cpu_us_per_job: float


async def drain_rate(
    redis: Redis, url: str, function: str, n: int, extra: dict[str, str] | None = None
) -> float:
    return (await drain(redis, url, function, n, extra)).jobs_per_s


async def drain(
    redis: Redis, url: str, function: str, n: int, extra: dict[str, str] | None = None
) -> Drain:
    """One worker process drains `n` queued jobs; timed from its first settlement."""
    keys = PartitionKeys(function, 0)
    worker = start_worker(url, function, extra or {})
    try:
        first = await until_completed(redis, keys, 1, 0.002)
        start, cpu = time.perf_counter(), await cpu_s(redis, worker.pid)
        # Polled rarely: the poller shares the 2 cores with the worker and Redis.
        done = await until_completed(redis, keys, n, 0.05)
        elapsed, used = time.perf_counter() - start, await cpu_s(redis, worker.pid) - cpu
        return Drain((done - first) / elapsed, used / (done - first) * 1e6)
    finally:
        stop(worker)


# Worker processes under one supervisor (`sluice worker --processes N`).
PROCESSES = (1, 2, 4)


async def process_drain_rates(
    client: Client, redis: Redis, url: str, n: int
) -> tuple[dict[int, float], float]:
    """The single-job drain of `n` jobs by 1, 2 and 4 worker processes against one
    Redis, each timed from the first settlement; and the Redis memory a finished
    job's record (no result) keeps, from the first drain."""
    keys = PartitionKeys("noop", 0)
    rates: dict[int, float] = {}
    finished_bytes = 0.0
    for processes in PROCESSES:
        before: int = (await redis.info("memory"))["used_memory"]
        await publish_rate(client, "noop", n)
        worker = start_worker(url, "noop", {}, processes=processes)
        try:
            first = await until_completed(redis, keys, 1, 0.002)
            start = time.perf_counter()
            done = await until_completed(redis, keys, n, 0.05)
            rates[processes] = (done - first) / (time.perf_counter() - start)
        finally:
            stop(worker)
        if processes == 1:
            finished_bytes = ((await redis.info("memory"))["used_memory"] - before) / n
        await redis.flushall()
    return rates, finished_bytes


async def cpu_s(redis: Redis, pid: int) -> float:
    """CPU seconds used so far by process `pid` and by the Redis server."""
    info = await redis.info("cpu")
    return process_cpu_s(pid) + float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process (/proc; a local file, read at once)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def latency(client: Client, redis: Redis, url: str, seconds: float) -> list[float]:
    """Publish one job per ms for `seconds`; the handler records publish->handler time."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "latency"
        worker = start_worker(url, "timed", {"LATENCY_FILE": str(path)})
        try:
            await client.publish("timed", workspace="warm", data=Ping(sent_ns=0))
            await until_completed(redis, PartitionKeys("timed", 0), 1, 0.01)
            loop = asyncio.get_running_loop()
            begin = loop.time()
            total = int(seconds * 1000)
            for i in range(total):
                # Paced by the loop's clock so a slow publish does not shift the schedule.
                await asyncio.sleep(max(0.0, begin + i / 1000 - loop.time()))
                await client.publish(
                    "timed", workspace=f"ws{i % 10}", data=Ping(sent_ns=time.time_ns())
                )
            await until_completed(redis, PartitionKeys("timed", 0), total + 1, 0.01)
        finally:
            stop(worker)
        return [int(line) / 1e6 for line in path.read_text().split()]


async def compared_drains(
    client: Client, redis: Redis, url: str, n: int, rounds: int = 3
) -> tuple[Drain, Drain, Drain]:
    """Batch drains plain, with limits never hit, and without backlogs: the median
    of `rounds` interleaved runs each, so the costs compared are not this
    machine's drift between two runs (it varies by a third)."""
    functions = ("noop-batch", "noop-batch-limited", "noop-batch-unshared")
    runs: dict[str, list[Drain]] = {f: [] for f in functions}
    for _ in range(rounds):
        for function in functions:
            await publish_rate(client, function, n)
            runs[function].append(await drain(redis, url, function, n))
            await redis.flushall()
    plain, limited, unshared = (
        Drain(
            statistics.median(d.jobs_per_s for d in runs[f]),
            statistics.median(d.cpu_us_per_job for d in runs[f]),
        )
        for f in functions
    )
    return plain, limited, unshared


class Figures(msgspec.Struct):
    redis_version: str
    jobs: int
    raw_publish_rate: float
    raw_drain_rate: float
    publish_rate: float
    drain_rate: float
    # The same with tracing on: every span sampled, none exported.
    drain_rate_traced: float
    # The same drain by 1, 2 and 4 worker processes (--processes), by count.
    drain_rate_processes: dict[int, float]
    batch_drain_rate: float
    batch_drain_rate_limited: float
    # The batch drain with no backlogs (workspace_share unbounded): 100 workspaces
    # of 500 jobs each otherwise wait in backlogs past their share of 100.
    batch_drain_rate_unshared: float
    # CPU µs per job (worker process + Redis) of the same three drains.
    batch_drain_cpu_us: float
    batch_drain_limited_cpu_us: float
    batch_drain_unshared_cpu_us: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    backlog: int
    lateness_backlog_p99_ms: float
    delayed_bytes_per_job: float
    # What a finished job's record (and its place in the retention index) keeps.
    finished_bytes_per_job: float
    promote_rate: float
    # A global limit under steady overload (bench.limits).
    limit_held_rate: float
    limit_held_ratio: float
    limit_deferrals_per_job: float
    # The same limit over 4 partitions, every job of one workspace (one partition).
    limit_skewed_rate: float
    limit_skewed_ratio: float
    # A local 3-master cluster (bench.cluster): raw drain on one shard, and the
    # drain of a 3-partition function by 1, 2 and 4 worker processes.
    cluster_raw_drain_rate: float
    cluster_drain_rate_processes: dict[int, float]
    # One ingress process under wrk (bench.ingress), and the bare aiohttp ceiling.
    ingress_ceiling_rps: float
    ingress_single_rps: float
    ingress_single_p50_ms: float
    ingress_single_p99_ms: float
    # CPU µs a request of the ceiling's and of the ingress's process.
    ingress_ceiling_cpu_us: float
    ingress_single_cpu_us: float
    ingress_batch_events_per_s: float


async def run(n: int, seconds: float, backlog: int) -> Figures:
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(Path(folder), appendonly=False)
        server.start()
        try:
            redis = connect(RedisSettings(url=server.url))
            version = (await redis.info("server"))["redis_version"]
            raw_pub = await raw_publish_rate(redis, n)
            raw_drain = await raw_drain_rate(redis, n)
            await redis.flushall()
            client = Client(redis, load(SPEC))
            pub = await publish_rate(client, "noop", n)
            drain = await drain_rate(redis, server.url, "noop", n)
            await redis.flushall()
            await publish_rate(client, "noop", n)
            traced = await drain_rate(redis, server.url, "noop", n, {"BENCH_TRACING": "1"})
            # The completed count is the partition's, since its first job.
            await redis.flushall()
            by_processes, finished_bytes = await process_drain_rates(client, redis, server.url, n)
            batch_drain, limited_drain, unshared_drain = await compared_drains(
                client, redis, server.url, n
            )
            lat = sorted(await latency(client, redis, server.url, seconds))
            await redis.flushall()
            late = sorted(await lateness(client, redis, server.url, 2_000, 5.0))
            await redis.flushall()
            per_job = await delayed_bytes_per_job(client, redis, "timed", backlog)
            late_backlog = sorted(await lateness(client, redis, server.url, 2_000, 5.0))
            await redis.flushall()
            promote = await promote_rate(client, redis, n)
            await redis.flushall()
            held = await limit_held(client, redis, server.url, 5_000)
            await redis.flushall()
            skewed = await limit_held(
                client, redis, server.url, 5_000, function="noop-rate-spread", partitions=4
            )
            await redis.flushall()
            ceiling, single, batch = await asyncio.to_thread(measure_ingress, server.url)
            await redis.aclose()
        finally:
            server.stop()
    # After the single server stopped: the cluster's nodes want the cores to themselves.
    on_cluster = await cluster_drains(n)
    return Figures(
        redis_version=version,
        jobs=n,
        raw_publish_rate=round(raw_pub),
        raw_drain_rate=round(raw_drain),
        publish_rate=round(pub),
        drain_rate=round(drain),
        drain_rate_traced=round(traced),
        drain_rate_processes={k: round(v) for k, v in by_processes.items()},
        batch_drain_rate=round(batch_drain.jobs_per_s),
        batch_drain_rate_limited=round(limited_drain.jobs_per_s),
        batch_drain_rate_unshared=round(unshared_drain.jobs_per_s),
        batch_drain_cpu_us=round(batch_drain.cpu_us_per_job, 2),
        batch_drain_limited_cpu_us=round(limited_drain.cpu_us_per_job, 2),
        batch_drain_unshared_cpu_us=round(unshared_drain.cpu_us_per_job, 2),
        latency_p50_ms=round(statistics.median(lat), 3),
        latency_p99_ms=round(lat[int(len(lat) * 0.99)], 3),
        latency_max_ms=round(lat[-1], 3),
        lateness_p50_ms=round(statistics.median(late), 3),
        lateness_p99_ms=round(late[int(len(late) * 0.99)], 3),
        lateness_max_ms=round(late[-1], 3),
        backlog=backlog,
        lateness_backlog_p99_ms=round(late_backlog[int(len(late_backlog) * 0.99)], 3),
        delayed_bytes_per_job=round(per_job, 1),
        finished_bytes_per_job=round(finished_bytes, 1),
        promote_rate=round(promote),
        limit_held_rate=round(held.jobs_per_s, 1),
        limit_held_ratio=round(held.jobs_per_s / held.limit_per_s, 3),
        limit_deferrals_per_job=round(held.deferrals_per_job, 2),
        limit_skewed_rate=round(skewed.jobs_per_s, 1),
        limit_skewed_ratio=round(skewed.jobs_per_s / skewed.limit_per_s, 3),
        cluster_raw_drain_rate=round(on_cluster.raw_drain_rate),
        cluster_drain_rate_processes={
            k: round(v) for k, v in on_cluster.drain_rate_processes.items()
        },
        ingress_ceiling_rps=round(ceiling.requests_per_s),
        ingress_single_rps=round(single.requests_per_s),
        ingress_single_p50_ms=single.p50_ms,
        ingress_single_p99_ms=single.p99_ms,
        ingress_ceiling_cpu_us=round(ceiling.cpu_us, 1),
        ingress_single_cpu_us=round(single.cpu_us, 1),
        ingress_batch_events_per_s=round(batch.requests_per_s * 100),
    )


def report(f: Figures) -> None:
    print(f"redis {f.redis_version}, {f.jobs} jobs, one worker process, no-op handler")
    rows = [
        ("raw pipelined XADD", f.raw_publish_rate, None),
        ("raw XREADGROUP + XACK", f.raw_drain_rate, None),
        ("publish (bulk)", f.publish_rate, f.publish_rate / f.raw_publish_rate),
        ("drain (single-job handler)", f.drain_rate, f.drain_rate / f.raw_drain_rate),
        ("  traced", f.drain_rate_traced, f.drain_rate_traced / f.raw_drain_rate),
        *(
            (f"  by {k} worker process{'es' if k > 1 else ''}", rate, rate / f.raw_drain_rate)
            for k, rate in f.drain_rate_processes.items()
        ),
        ("drain (batch handler)", f.batch_drain_rate, f.batch_drain_rate / f.raw_drain_rate),
        (
            "  with limits, none hit",
            f.batch_drain_rate_limited,
            f.batch_drain_rate_limited / f.raw_drain_rate,
        ),
        (
            "  without backlogs",
            f.batch_drain_rate_unshared,
            f.batch_drain_rate_unshared / f.raw_drain_rate,
        ),
    ]
    for name, rate, ratio in rows:
        share = f"  {ratio:5.0%} of raw" if ratio is not None else ""
        print(f"  {name:28} {rate:>10,.0f} jobs/s{share}")
    print(f"  tracing (every span sampled) costs {1 - f.drain_rate_traced / f.drain_rate:.0%}"
          " of the single-job drain rate")  # fmt: skip
    cost = 1 - f.batch_drain_rate_limited / f.batch_drain_rate
    cpu = f.batch_drain_limited_cpu_us / f.batch_drain_cpu_us - 1
    print(
        f"  checking rate limits costs {cost:.0%} of the batch drain rate; CPU per job "
        f"{f.batch_drain_cpu_us} -> {f.batch_drain_limited_cpu_us} us ({cpu:+.0%})"
    )
    fairness = 1 - f.batch_drain_rate / f.batch_drain_rate_unshared
    cpu = f.batch_drain_cpu_us / f.batch_drain_unshared_cpu_us - 1
    print(
        f"  backlogs (fairness) cost {fairness:.0%} of the batch drain rate; CPU per job "
        f"{f.batch_drain_unshared_cpu_us} -> {f.batch_drain_cpu_us} us ({cpu:+.0%})"
    )
    print(
        f"  latency at 1,000 jobs/s       p50 {f.latency_p50_ms} ms  "
        f"p99 {f.latency_p99_ms} ms  max {f.latency_max_ms} ms"
    )
    print(
        f"  lateness, 2,000 due over 5 s  p50 {f.lateness_p50_ms} ms  "
        f"p99 {f.lateness_p99_ms} ms  max {f.lateness_max_ms} ms"
    )
    print(f"  lateness p99 with {f.backlog:,} delayed far ahead  {f.lateness_backlog_p99_ms} ms")
    print(
        f"  memory per delayed job         {f.delayed_bytes_per_job:,.0f} bytes beyond its payload"
    )
    print(f"  memory per finished job        {f.finished_bytes_per_job:,.0f} bytes (its record)")
    print(f"  promote (delayed -> stream)    {f.promote_rate:>10,.0f} jobs/s")
    print(
        f"  5,000 jobs over a 500/s limit  {f.limit_held_rate:>10,.1f} jobs/s  "
        f"{f.limit_held_ratio:5.1%} of the limit, "
        f"{f.limit_deferrals_per_job} deferrals a job"
    )
    print(
        f"  the same, 4 partitions, one workspace  {f.limit_skewed_rate:>10,.1f} jobs/s  "
        f"{f.limit_skewed_ratio:5.1%} of the limit"
    )
    raw = f.cluster_raw_drain_rate
    print(f"  3-master cluster: raw XREADGROUP + XACK (one shard) {raw:>10,.0f} jobs/s")
    for k, rate in f.cluster_drain_rate_processes.items():
        name = f"drain over 3 partitions by {k} process{'es' if k > 1 else ''}"
        print(f"    {name:42} {rate:>10,.0f} jobs/s  {rate / raw:5.0%} of raw")
    print(f"  ingress ceiling (bare aiohttp)  {f.ingress_ceiling_rps:>10,.0f} requests/s")
    print(
        f"  ingress, one event a request   {f.ingress_single_rps:>10,.0f} requests/s  "
        f"{f.ingress_single_rps / f.ingress_ceiling_rps:5.0%} of the ceiling  "
        f"p50 {f.ingress_single_p50_ms} ms  p99 {f.ingress_single_p99_ms} ms"
    )
    print(
        f"  CPU a request                  ceiling {f.ingress_ceiling_cpu_us} µs, "
        f"ingress {f.ingress_single_cpu_us} µs: "
        f"{f.ingress_ceiling_cpu_us / f.ingress_single_cpu_us:.0%} of the ceiling"
    )
    print(
        f"  ingress, 100 events a request  {f.ingress_batch_events_per_s:>10,.0f} events/s    "
        f"{f.ingress_batch_events_per_s / f.publish_rate:5.0%} of bulk publish"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument(
        "--backlog", type=int, default=1_000_000, help="delayed jobs far ahead, for lateness"
    )
    args = parser.parse_args()
    figures = uvloop.run(run(args.jobs, args.latency_seconds, args.backlog))
    report(figures)
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(figures)) + b"\n")


if __name__ == "__main__":
    main()
