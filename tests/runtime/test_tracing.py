"""One trace from the HTTP request through promotion and a retry to the handler
and its webhook call; a batch span linking each job's publish. Spans go to the
SDK's in-memory exporter."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sluice.runtime import Client, Event, Jobs
from sluice.runtime.registry import load
from sluice.runtime.telemetry import export, instruments, logs, tracing
from sluice.streams.connection import Redis
from sluice.streams.errors import ConfigurationError
from tests.ingress.conftest import start_api
from tests.redis_server import RedisServer
from tests.runtime.helpers import (
    SAMPLE,
    read_ledger,
    total_counts,
    wait_until,
    worker_in_process,
)


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[str]]]:
    """A URL answering 200, and the traceparent headers it received."""
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(request.headers.get("traceparent", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/hook")), received
    await server.close()


def attempt_of(span: ReadableSpan) -> int:
    assert span.attributes is not None
    attempt = span.attributes["sluice.attempt"]
    assert isinstance(attempt, int)
    return attempt


def of_kind(spans: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.kind == kind]


async def test_a_delayed_retried_job_is_one_trace_from_the_request_to_each_attempt(
    redis: Redis,
    shared_server: RedisServer,
    ledger: Path,
    spans: InMemorySpanExporter,
    webhook: tuple[str, list[str]],
) -> None:
    url, received = webhook
    api = await start_api(redis, shared_server.url)
    try:
        async with worker_in_process(shared_server.url, "retry-tasks", scheduler=True):
            data = {"n": 1, "mode": "raise", "fail_times": 1, "webhook": url}
            event = {"workspace": "acme", "data": data, "delay_ms": 100}
            answer = await api.post("/v1/events/retry-tasks", event)
            assert answer.status == 202
            job_id = (await answer.json())["id"]

            async def handled() -> bool:
                return read_ledger(ledger)[job_id] == 1

            await wait_until(handled, what="the job handled on its second attempt")
    finally:
        await api.http.close()
    (request,) = of_kind(spans, SpanKind.SERVER)
    (send,) = of_kind(spans, SpanKind.PRODUCER)
    attempts = sorted(of_kind(spans, SpanKind.CONSUMER), key=attempt_of)
    assert [attempt_of(s) for s in attempts] == [1, 2]
    trace_id = request.context.trace_id
    assert send.parent is not None
    assert send.parent.span_id == request.context.span_id
    assert send.attributes["messaging.destination.name"] == "retry-tasks"  # type: ignore[index]
    for attempt in attempts:
        assert attempt.context.trace_id == trace_id
        assert attempt.parent is not None
        assert attempt.parent.span_id == send.context.span_id
        assert attempt.attributes["messaging.message.id"] == job_id  # type: ignore[index]
        assert attempt.attributes["messaging.system"] == "redis"  # type: ignore[index]
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[1].status.status_code != StatusCode.ERROR
    # The scheduler's promotions, of the delayed publish and of the retry.
    promotions = of_kind(spans, SpanKind.INTERNAL)
    assert len(promotions) == 2
    for promotion in promotions:
        assert promotion.parent is not None
        assert promotion.parent.span_id == send.context.span_id
        assert promotion.context.trace_id == trace_id
    # Each attempt's webhook call is its child, and the webhook got the trace.
    process_ids = {a.context.span_id for a in attempts}
    calls = [
        s for s in of_kind(spans, SpanKind.CLIENT) if s.parent and s.parent.span_id in process_ids
    ]
    assert len(calls) == 2
    assert all(call.context.trace_id == trace_id for call in calls)
    assert [h.split("-")[1] for h in received] == [f"{trace_id:032x}"] * 2


async def test_a_batch_span_links_every_jobs_publish(
    redis: Redis, shared_server: RedisServer, ledger: Path, spans: InMemorySpanExporter
) -> None:
    client = Client(redis, load(SAMPLE))
    receipts = [
        (await client.publish("window-tasks", workspace="acme", data={"n": n})).id for n in range(3)
    ]
    async with worker_in_process(shared_server.url, "window-tasks"):

        async def handled() -> bool:
            return len(read_ledger(ledger)) == 3

        await wait_until(handled, what="the batch handled")
    sends = {s.context.span_id: s for s in of_kind(spans, SpanKind.PRODUCER)}
    assert len(sends) == 3
    consumers = of_kind(spans, SpanKind.CONSUMER)
    batches = [s for s in consumers if "messaging.batch.message_count" in s.attributes]  # type: ignore[operator]
    jobs = [s for s in consumers if "messaging.message.id" in s.attributes]  # type: ignore[operator]
    linked = {link.context.span_id for batch in batches for link in batch.links}
    assert linked == set(sends)
    # Each job's own span sits in its publish's trace.
    assert sorted(j.attributes["messaging.message.id"] for j in jobs) == sorted(receipts)  # type: ignore[index,type-var]
    for job in jobs:
        assert job.parent is not None
        assert sends[job.parent.span_id].context.trace_id == job.context.trace_id


async def test_link_mode_starts_a_trace_per_delivery(
    redis: Redis, shared_server: RedisServer, ledger: Path, spans: InMemorySpanExporter
) -> None:
    provider = tracing.provider()
    tracing.use(provider, "link")
    client = Client(redis, load(SAMPLE))
    await client.publish_many("tasks", [Event(workspace="acme", data={"n": 1})])
    async with worker_in_process(shared_server.url, "tasks"):

        async def handled() -> bool:
            return len(read_ledger(ledger)) == 1

        await wait_until(handled, what="the job handled")
    (send,) = of_kind(spans, SpanKind.PRODUCER)
    (process,) = of_kind(spans, SpanKind.CONSUMER)
    assert process.parent is None
    assert process.context.trace_id != send.context.trace_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]


def test_a_json_log_line_names_its_trace_and_job(spans: InMemorySpanExporter) -> None:
    provider = tracing.provider()
    assert provider is not None
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("sms", logging.INFO, __file__, 1, "sent %s", ("it",), None)
    token = logs.job.set(("sms.send", "acme", "job-1"))
    try:
        with provider.get_tracer("test").start_as_current_span("handler") as span:
            line = msgspec.json.decode(formatter.format(record))
    finally:
        logs.job.reset(token)
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert (line["function"], line["workspace"], line["job_id"]) == ("sms.send", "acme", "job-1")
    assert line["message"] == "sent it"


@pytest.fixture
def readings() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    instruments.use(MeterProvider(metric_readers=[reader]))
    yield reader
    instruments.use(None)


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


async def test_workers_measure_handler_time_latency_and_lateness(
    redis: Redis, shared_server: RedisServer, ledger: Path, readings: InMemoryMetricReader
) -> None:
    client = Client(redis, load(SAMPLE))
    await client.publish_many("tasks", [Event(workspace="acme", data={"n": n}) for n in range(3)])
    await client.publish_many(
        "tasks", [Event(workspace="acme", data={"n": 9, "mode": "reject"}, delay_ms=100)]
    )
    async with worker_in_process(shared_server.url, "tasks", scheduler=True):

        async def settled() -> bool:
            return (await total_counts(redis, "tasks")).dead == 1 and len(read_ledger(ledger)) == 3

        await wait_until(settled, what="the jobs settled")
    found = points(readings)
    (duration,) = found["sluice.handler.duration"]
    assert duration.count == 4
    (latency,) = found["sluice.job.latency"]
    assert latency.count == 4
    (lateness,) = found["sluice.job.lateness"]
    # Only the delayed job was due later; it started within a second of it.
    assert lateness.count == 1
    assert lateness.max < 1000
    outcomes = {p.attributes["outcome"]: p.value for p in found["sluice.jobs.settled"]}
    assert outcomes == {"completed": 3, "dead": 1}


def test_telemetry_is_configured_from_the_otel_variables() -> None:
    assert export.configure("worker", {}, "parent") == []
    assert not tracing.enabled()
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        export.configure("worker", {"OTEL_TRACES_EXPORTER": "zipkin"}, "parent")
    assert export.configure("worker", {"OTEL_SDK_DISABLED": "true"}, "parent") == []


async def test_a_jobs_status_names_the_trace_it_was_published_in(
    redis: Redis, spans: InMemorySpanExporter
) -> None:
    registry = load(SAMPLE)
    receipt = await Client(redis, registry).publish(
        "tasks", workspace="acme", data={"n": 1}, delay_ms=3_600_000
    )
    (publish,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    record = await Jobs(redis, registry).get("tasks", receipt.id)
    assert record is not None
    assert record.trace_id == format(publish.context.trace_id, "032x")
