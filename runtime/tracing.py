"""One trace from publish to handler: W3C trace context travels in the envelope.

Tracing is off until a tracer provider is installed (`use`, called by
runtime.telemetry from the standard OTEL_* variables, or by a test with its own
exporter); while off, every function here returns at its first line, so the hot
path pays one attribute test per call.

Spans follow the OpenTelemetry messaging conventions: a `send` span per publish
call (PRODUCER), whose context each job carries; a `process` span per job
(CONSUMER) when a handler runs it, with the attempt, and for a batch handler a
batch span linking every job's publish. In parent mode (the default) a job's
process spans are children of its publish span, one trace per job; in link mode
each delivery starts a trace linked to the publish, for jobs that reschedule
themselves forever and would otherwise make one endless trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TracerProvider

from streams import envelope as env

Mode = Literal["parent", "link"]

SYSTEM = "redis"


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


@contextlib.contextmanager
def serving(method: str, route: str, headers: Mapping[str, str]) -> Iterator[trace.Span | None]:
    """Around one HTTP request: a SERVER span, continuing the caller's trace if its
    headers carry one (HTTP semantic conventions). None while tracing is off."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        f"{method} {route}",
        context=propagate.extract(headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "http.route": route},
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
    jobs: dict[str, trace.Span] = {}
    with contextlib.ExitStack() as spans:
        if batched:
            links = [Link(c) for e in envelopes if (c := _span_context(e)) is not None]
            spans.enter_context(
                tracer.start_as_current_span(
                    f"process {function}",
                    context=context.Context(),
                    kind=SpanKind.CONSUMER,
                    links=links,
                    attributes={
                        "messaging.system": SYSTEM,
                        "messaging.operation.type": "process",
                        "messaging.destination.name": function,
                        "messaging.batch.message_count": len(envelopes),
                        "sluice.workspace": envelopes[0].workspace,
                    },
                )
            )
        for e in envelopes:
            jobs[e.id] = spans.enter_context(_job_span(tracer, function, e, current=not batched))
        yield jobs


def failed(span: trace.Span, error: str) -> None:
    span.set_status(Status(StatusCode.ERROR, error))


@contextlib.contextmanager
def _job_span(
    tracer: trace.Tracer, function: str, e: env.Envelope, *, current: bool
) -> Iterator[trace.Span]:
    parent = _span_context(e)
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": function,
        "messaging.message.id": e.id,
        "sluice.workspace": e.workspace,
        "sluice.attempt": e.attempt,
    }
    if _state.mode == "parent" and parent is not None:
        start: dict[str, Any] = {
            "context": trace.set_span_in_context(trace.NonRecordingSpan(parent))
        }
    else:
        start = {"context": context.Context(), "links": [Link(parent)] if parent else []}
    if current:
        with tracer.start_as_current_span(
            f"process {function}", kind=SpanKind.CONSUMER, attributes=attributes, **start
        ) as span:
            yield span
    else:
        with tracer.start_span(
            f"process {function}", kind=SpanKind.CONSUMER, attributes=attributes, **start
        ) as span:
            yield span


def _span_context(e: env.Envelope) -> trace.SpanContext | None:
    if not e.trace:
        return None
    found = trace.get_current_span(propagate.extract(e.trace)).get_span_context()
    return found if found.is_valid else None
