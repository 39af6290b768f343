"""One trace from publish to handler: W3C trace context travels in the envelope.

Tracing is off until a tracer provider is installed (`use`, called by
runtime.telemetry.export from the standard OTEL_* variables, or by a test with its own
exporter); while off, every function here returns at its first line, so the hot
path pays one attribute test per call.

Spans follow the OpenTelemetry messaging conventions: a `send` span per publish
call (PRODUCER), whose context each job carries; a `process` span per job
(CONSUMER) when a handler runs it, with the attempt, and for a batch handler a
batch span linking every job's publish. In parent mode (the default) a job's
process spans are children of its publish span, one trace per job; in link mode
each delivery starts a trace linked to the publish, for jobs that reschedule
themselves forever and would otherwise make one endless trace.

HTTP spans, the ingress's SERVER spans and the CLIENT spans of handlers' aiohttp
calls alike, follow the stable HTTP conventions (`http.request.method`,
`url.path`/`url.full`, `server.address`, `http.response.status_code`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.aiohttp_client import (
    _instrument as _instrument_aiohttp,
)
from opentelemetry.instrumentation.aiohttp_client import (
    _uninstrument as _uninstrument_aiohttp,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sluice.runtime.declare import Failure
from sluice.streams import envelope as env

Mode = Literal["parent", "link"]

SYSTEM = "redis"
_W3C = TraceContextTextMapPropagator()


class _State:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None
    mode: Mode = "parent"


_state = _State()


def use(provider: TracerProvider | None, mode: Mode = "parent") -> None:
    """Trace with `provider` from now on (None: stop tracing)."""
    _state.provider = provider
    _state.tracer = None if provider is None else provider.get_tracer("sluice")
    _state.mode = mode


def enabled() -> bool:
    return _state.tracer is not None


def provider() -> TracerProvider | None:
    """The provider in use, for instrumentation of the HTTP server and client."""
    return _state.provider


def instrument_client(provider: TracerProvider) -> None:
    """Trace every aiohttp ClientSession made from now on (a handler's calls to a
    provider or a webhook), carrying the trace on in its headers.

    OpenTelemetry's instrumentor writes the old HTTP conventions (`http.method`,
    `http.url`) unless OTEL_SEMCONV_STABILITY_OPT_IN, read once per process, says
    otherwise; its module-level function takes the mode, so client spans match
    the server's whatever the environment.
    """
    _instrument_aiohttp(tracer_provider=provider, sem_conv_opt_in_mode=_StabilityMode.HTTP)


def uninstrument_client() -> None:
    _uninstrument_aiohttp()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def serving(
    method: str, route: str, headers: Mapping[str, str], *, path: str, scheme: str,
    address: str, port: int | None,
) -> Iterator[trace.Span | None]:  # fmt: skip
    """Around one HTTP request: a SERVER span, continuing the caller's trace if its
    headers carry one (HTTP semantic conventions). None while tracing is off."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "http.route": route,
        "url.path": path,
        "url.scheme": scheme,
        "server.address": address,
    }
    if port is not None:
        attributes["server.port"] = port
    with tracer.start_as_current_span(
        f"{method} {route}",
        context=propagate.extract(headers),
        kind=SpanKind.SERVER,
        attributes=attributes,
    ) as span:
        yield span


def answered(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


@contextlib.contextmanager
def publishing(target: str, count: int) -> Iterator[dict[str, str] | None]:
    """Around a publish call: yields the trace context for its envelopes (None when
    tracing is off), taken from a `send` span that is current meanwhile."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": target,
        "messaging.batch.message_count": count,
    }
    with tracer.start_as_current_span(f"send {target}", kind=SpanKind.PRODUCER,
                                      attributes=attributes):  # fmt: skip
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier


@contextlib.contextmanager
def processing(
    function: str, envelopes: Sequence[env.Envelope], batched: bool
) -> Iterator[dict[str, trace.Span]]:
    """Around one handler call: a `process` span per job in its own trace, and for a
    batch handler a batch span, current during the call, linking every job.

    Yields the job spans by job id (none while tracing is off), for `failed`.
    """
    tracer = _state.tracer
    if tracer is None:
        yield {}
        return
    name = f"process {function}"
    if not batched:
        # The common case, kept to one span and no stack of context managers: a
        # span of the SDK costs about as much as the rest of a job's handling.
        (e,) = envelopes
        with tracer.start_as_current_span(
            name, kind=SpanKind.CONSUMER, attributes=_attributes(function, e), **_start(e)
        ) as span:
            yield {e.id: span}
        return
    links = [Link(c) for e in envelopes if (c := _span_context(e)) is not None]
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": function,
        "messaging.batch.message_count": len(envelopes),
        "sluice.workspace": envelopes[0].workspace,
    }
    with tracer.start_as_current_span(
        name, context=context.Context(), kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ):
        jobs = {
            e.id: tracer.start_span(
                name, kind=SpanKind.CONSUMER, attributes=_attributes(function, e), **_start(e)
            )
            for e in envelopes
        }
        try:
            yield jobs
        except BaseException as exc:
            for span in jobs.values():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in jobs.values():
                span.end()


def promoted(function: str, jobs: Sequence[tuple[str, str]]) -> None:
    """A `promote` span in each promoted job's trace (parent mode: under its publish
    span), at the moment the scheduler moved it from the delayed set."""
    tracer = _state.tracer
    if tracer is None:
        return
    for job_id, traceparent in jobs:
        parent = trace.get_current_span(_W3C.extract({"traceparent": traceparent}))
        found = parent.get_span_context()
        if not found.is_valid:
            continue
        start: dict[str, Any] = (
            {"context": trace.set_span_in_context(parent)}
            if _state.mode == "parent"
            else {"context": context.Context(), "links": [Link(found)]}
        )
        tracer.start_span(
            f"promote {function}",
            kind=SpanKind.INTERNAL,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.name": "promote",
                "messaging.destination.name": function,
                "messaging.message.id": job_id,
            },
            **start,
        ).end()


def failed(span: trace.Span, failure: Failure) -> None:
    """A job's attempt failed: the span's status, and the exception as its event with
    the bounded traceback the job keeps (the SDK would format every frame)."""
    if failure.exception is not None:
        stack = {"exception.stacktrace": failure.traceback} if failure.traceback else None
        span.record_exception(failure.exception, attributes=stack)
    span.set_status(Status(StatusCode.ERROR, failure.error))


def _attributes(function: str, e: env.Envelope) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": function,
        "messaging.message.id": e.id,
        "sluice.workspace": e.workspace,
        "sluice.attempt": e.attempt,
    }


def _start(e: env.Envelope) -> dict[str, Any]:
    """Where a job's process span starts: under its publish span (parent mode) or in
    a trace of its own linked to it."""
    parent = _span_context(e)
    if _state.mode == "parent" and parent is not None:
        return {"context": trace.set_span_in_context(trace.NonRecordingSpan(parent))}
    return {"context": context.Context(), "links": [Link(parent)] if parent else []}


def _span_context(e: env.Envelope) -> trace.SpanContext | None:
    if not e.trace:
        return None
    # W3C traceparent alone: the publish span's context is all a job's spans need.
    found = trace.get_current_span(_W3C.extract(e.trace)).get_span_context()
    return found if found.is_valid else None
