"""`GET /metrics`: Prometheus text, through the OpenTelemetry metrics API.

What it shows is read from Redis at each scrape, so it is the whole
deployment's (every worker's counts and metrics, summed), whichever ingress is
scraped: jobs by outcome (published, processed, completed, failed, retried,
dead, expired, cancelled), what waits (unread and backlogged, active, delayed,
dead), jobs due in the next 1, 5 and 15 minutes (for an autoscaler to add
workers before a 09:00 burst), rate-limit deferrals for the 10 most deferred
workspaces, the rest summed as "other" so series stay bounded, and three
histograms per function: handler call time, latency from publish to
completion, lateness from due time to start (the workers' bucket counts in
Redis, streams.metrics, so any ingress shows the whole deployment's).

OpenTelemetry's observable instruments call back synchronously, and Redis is
read asynchronously: a scrape reads Redis first into a snapshot, then collects.
OpenTelemetry has no observable histogram: those are a prometheus_client
collector of their own on the same registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import msgspec
from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from sluice.runtime.client.metrics import Histogram, Histograms, Snapshot
from sluice.runtime.ingress.auth import ApiKey
from sluice.runtime.ingress.routes import Admin, Route, Services
from sluice.streams.connection import is_cluster
from sluice.streams.errors import wrap_unavailable
from sluice.streams.jobs import Counts

TOP_WORKSPACES = 10
DUE_WITHIN_MIN = (1, 5, 15)


class Scrape(msgspec.Struct):
    counts: dict[str, Counts] = {}
    metrics: dict[str, Snapshot] = {}
    histograms: dict[str, Histograms] = {}
    # function -> minutes -> jobs due within them
    due: dict[str, dict[int, int]] = {}
    # function -> workspace (top ones, then "other") -> jobs deferred
    deferred: dict[str, dict[str, int]] = {}


class Exposition:
    """One meter provider per app, with its own Prometheus registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=self.registry
        )
        self.provider = MeterProvider(metric_readers=[reader])
        self.latest = Scrape()
        meter = self.provider.get_meter("sluice")

        def counter(name: str, read: Callable[[Counts], int], text: str) -> None:
            meter.create_observable_counter(name, [self._counts(read)], "1", text)

        def gauge(name: str, read: Callable[[Counts], int], text: str) -> None:
            meter.create_observable_gauge(name, [self._counts(read)], "1", text)

        counter("sluice.jobs.published", lambda c: c.published, "jobs published")
        counter("sluice.jobs.completed", lambda c: c.completed, "jobs completed")
        counter("sluice.attempts.failed", lambda c: c.failed, "attempts that failed")
        counter("sluice.jobs.expired", lambda c: c.expired, "jobs expired before they ran")
        counter("sluice.jobs.cancelled", lambda c: c.cancelled, "jobs cancelled")
        counter("sluice.jobs.promoted", lambda c: c.promoted, "delayed jobs promoted")
        gauge("sluice.jobs.waiting", lambda c: c.waiting, "jobs waiting to be read")
        gauge("sluice.jobs.active", lambda c: c.active, "jobs read and not settled")
        gauge("sluice.jobs.delayed", lambda c: c.delayed, "jobs waiting for their time")
        gauge("sluice.dead_letters", lambda c: c.dead, "dead letters not replayed")
        meter.create_observable_gauge(
            "sluice.jobs.due_soon", [self._due], "1", "delayed jobs due within the minutes"
        )
        meter.create_observable_counter(
            "sluice.jobs.rate_limited", [self._deferred], "1", "jobs deferred by rate limits"
        )
        # From the metrics in Redis (runtime.client.metrics), which an operator may reset:
        # Prometheus reads a counter that drops as a reset, not as negative work.
        for name, read, text in (
            ("sluice.jobs.processed", lambda s: s.processed, "jobs a handler ran"),
            ("sluice.jobs.retried", lambda s: s.retried, "failed attempts retried"),
            ("sluice.jobs.dead", lambda s: s.dead, "jobs that went to the dead letters"),
        ):
            meter.create_observable_counter(name, [self._snapshot(read)], "1", text)
        meter.create_observable_gauge(
            "sluice.jobs.last_minute", [self._snapshot(lambda s: s.last_minute)], "1",
            "jobs processed in the last minute",
        )  # fmt: skip
        self.registry.register(_HistogramCollector(self))

    def _counts(
        self, read: Callable[[Counts], int]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(read(c), {"function": f}) for f, c in self.latest.counts.items()]

        return observe

    def _snapshot(
        self, read: Callable[[Snapshot], float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(read(s), {"function": f}) for f, s in self.latest.metrics.items()]

        return observe

    def _due(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"function": f, "within_minutes": str(m)})
            for f, due in self.latest.due.items()
            for m, n in due.items()
        ]

    def _deferred(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"function": f, "workspace": w})
            for f, by in self.latest.deferred.items()
            for w, n in by.items()
        ]

    async def read(self, services: Services) -> None:
        scrape = Scrape()
        now_ms = int(time.time() * 1000)
        for fn in services.registry:
            scrape.counts[fn.name] = await services.jobs.counts(fn.name)
            (
                scrape.metrics[fn.name],
                scrape.histograms[fn.name],
            ) = await services.metrics.read_with_histograms(fn.name)
            due = dict.fromkeys(DUE_WITHIN_MIN, 0)
            for keys in services.registry.partitions(fn.name, cluster=is_cluster(services.redis)):
                with wrap_unavailable():
                    for minutes in DUE_WITHIN_MIN:
                        due[minutes] += await services.redis.zcount(
                            keys.delayed, "-inf", now_ms + minutes * 60_000
                        )
            scrape.due[fn.name] = due
            deferrals = await services.limits.deferrals(fn.name)
            ranked = sorted(deferrals.items(), key=lambda item: -item[1].count)
            top = {w: d.count for w, d in ranked[:TOP_WORKSPACES]}
            rest = sum(d.count for _, d in ranked[TOP_WORKSPACES:])
            if rest:
                top["other"] = rest
            scrape.deferred[fn.name] = top
        self.latest = scrape

    def text(self) -> bytes:
        return generate_latest(self.registry)


HISTOGRAMS: tuple[tuple[str, Callable[[Histograms], Histogram], str], ...] = (
    ("sluice_handler_duration_seconds", lambda h: h.duration,
     "time of one handler call (one job or a batch)"),
    ("sluice_job_latency_seconds", lambda h: h.latency,
     "from publish to completion (a job published for later counts its delay)"),
    ("sluice_job_lateness_seconds", lambda h: h.lateness,
     "from a job's due time (published for later, retried, deferred) to its handler's start"),
)  # fmt: skip


class _HistogramCollector:
    """The histograms of the last scrape's read, as Prometheus histograms by function."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition

    def collect(self) -> Iterator[Metric]:
        for name, pick, text in HISTOGRAMS:
            family = HistogramMetricFamily(name, text, labels=["function"])
            for function, histograms in self.exposition.latest.histograms.items():
                found = pick(histograms)
                bounds = [f"{b / 1000:g}" for b in found.bounds_ms] + ["+Inf"]
                seen, buckets = 0, []
                for bound, count in zip(bounds, found.counts, strict=True):
                    seen += count
                    buckets.append((bound, float(seen)))
                family.add_metric([function], buckets, sum_value=found.sum_ms / 1000)
            yield family


async def metrics(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    exposition = services.exposition
    await exposition.read(services)
    return web.Response(body=exposition.text(), headers={"Content-Type": CONTENT_TYPE_LATEST})


ROUTES = [
    Route("GET", "/metrics", Admin(metrics),
          "Prometheus text of the whole deployment (admin key)", "metrics",
          replies={200: "text/plain"}),
]  # fmt: skip
