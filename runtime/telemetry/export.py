"""OpenTelemetry set up from the standard OTEL_* variables, once per process.

Traces are exported when OTEL_TRACES_EXPORTER is `otlp` or `console`, metrics
(runtime.telemetry.instruments) when OTEL_METRICS_EXPORTER is `otlp`, both when
OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP); otherwise each stays off
and costs nothing. The SDK itself reads the rest:
OTEL_SERVICE_NAME (default here: sluice-<role>), OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER and its argument, the exporter's endpoint and headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from sluice.runtime.telemetry import instruments, tracing
from sluice.streams.errors import ConfigurationError


class Shutdown(Protocol):
    def shutdown(self) -> object: ...


def configure(role: str, environ: Mapping[str, str], mode: tracing.Mode) -> list[Shutdown]:
    """Install tracer and meter providers as the environment asks; returns them, to be
    shut down (flushing what is buffered) when the process stops."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return []
    name = environ.get("OTEL_SERVICE_NAME") or f"sluice-{role}"
    resource = Resource.create({"service.name": name})
    installed: list[Shutdown] = []
    traces_to = _exporter(environ, "OTEL_TRACES_EXPORTER")
    if traces_to != "none":
        spans: SpanExporter = OTLPSpanExporter() if traces_to == "otlp" else ConsoleSpanExporter()
        traces = TracerProvider(resource=resource)
        traces.add_span_processor(BatchSpanProcessor(spans))
        trace.set_tracer_provider(traces)
        tracing.use(traces, mode)
        # A handler's outgoing HTTP calls (a webhook) carry the trace on.
        tracing.instrument_client(traces)
        installed.append(traces)
    if _exporter(environ, "OTEL_METRICS_EXPORTER") == "otlp":
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        meters = MeterProvider(resource=resource, metric_readers=[reader])
        metrics.set_meter_provider(meters)
        instruments.use(meters)
        installed.append(meters)
    return installed


def _exporter(environ: Mapping[str, str], variable: str) -> str:
    """otlp, console or none: as set, else otlp when an OTLP endpoint is set."""
    name = environ.get(variable) or (
        "otlp" if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
    )
    allowed = (
        ("otlp", "console", "none") if variable == "OTEL_TRACES_EXPORTER" else ("otlp", "none")
    )
    if name not in allowed:
        raise ConfigurationError(f"{variable}={name!r}: Sluice exports {', '.join(allowed)}")
    return name
