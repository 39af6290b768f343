"""Handlers measured by the benchmark: a no-op, and one that records publish->handler latency."""

from __future__ import annotations

import os
import time

import msgspec
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from sluice.runtime import Batch, Job, batch_function, function
from sluice.runtime.telemetry import tracing


class _Discard(SpanExporter):
    """Takes every span and keeps none: the cost of tracing without an exporter's."""

    def export(self, spans: object) -> SpanExportResult:
        del spans
        return SpanExportResult.SUCCESS


if os.environ.get("BENCH_TRACING") == "1":
    # Every span sampled (the SDK's default sampler is parent-based always-on),
    # through the batch processor production uses.
    _provider = TracerProvider()
    _provider.add_span_processor(BatchSpanProcessor(_Discard()))
    tracing.use(_provider)


class Ping(msgspec.Struct, frozen=True):
    sent_ns: int
    body: str = ""


@function("noop", input=Ping, batch_size=100, concurrency=16)
async def noop(job: Job[Ping]) -> None:
    del job


@batch_function("noop-batch", input=Ping, batch_size=100, concurrency=4)
async def noop_batch(batch: Batch[Ping]) -> None:
    del batch


# A per-workspace limit never hit: what checking the limits costs.
@batch_function(
    "noop-batch-limited",
    input=Ping,
    batch_size=100,
    concurrency=4,
    workspace_rate_per_s=1_000_000,
)
async def noop_batch_limited(batch: Batch[Ping]) -> None:
    del batch


# Every job straight into the stream, however many a workspace has waiting: what
# the backlogs (fairness) cost, against "noop-batch".
@batch_function(
    "noop-batch-unshared", input=Ping, batch_size=100, concurrency=4, workspace_share=10**9
)
async def noop_batch_unshared(batch: Batch[Ping]) -> None:
    del batch


# A global limit that a backlog overloads: how close to it the function runs.
LIMITED_RATE = 500.0


@batch_function(
    "noop-rate",
    input=Ping,
    batch_size=100,
    concurrency=4,
    rate_per_s=LIMITED_RATE,
    rate_burst_s=0.2,
)
async def noop_rate(batch: Batch[Ping]) -> None:
    del batch


# The same global limit over 4 partitions, all load from one workspace (one
# partition): the limit is the function's, not a share per partition.
@batch_function(
    "noop-rate-spread",
    input=Ping,
    batch_size=100,
    concurrency=4,
    rate_per_s=LIMITED_RATE,
    rate_burst_s=0.2,
    partitions=4,
)
async def noop_rate_spread(batch: Batch[Ping]) -> None:
    del batch


# The single-job no-op over 3 partitions: on a 3-master cluster, one on each primary.
@function("noop-spread", input=Ping, batch_size=100, concurrency=16, partitions=3)
async def noop_spread(job: Job[Ping]) -> None:
    del job


class _Latencies:
    """Appends publish->handler latencies (ns) to LATENCY_FILE, one write per 100."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def add(self, sent_ns: int) -> None:
        self.pending.append(str(time.time_ns() - sent_ns))
        if len(self.pending) >= 100:
            self.flush()

    def flush(self) -> None:
        path = os.environ.get("LATENCY_FILE")
        if path and self.pending:
            with open(path, "a") as out:
                out.write("\n".join(self.pending) + "\n")
        self.pending.clear()


latencies = _Latencies()


@function("timed", input=Ping, batch_size=100, concurrency=16)
async def timed(job: Job[Ping]) -> None:
    if job.data.sent_ns:  # 0 marks the warm-up job, which waited for the worker to start
        latencies.add(job.data.sent_ns)


FUNCTIONS = (
    noop,
    noop_batch,
    noop_batch_limited,
    noop_batch_unshared,
    noop_rate,
    noop_rate_spread,
    noop_spread,
    timed,
)
