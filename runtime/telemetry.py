"""OpenTelemetry set up from the standard OTEL_* variables, once per process.

Traces are exported when OTEL_TRACES_EXPORTER is `otlp` or `console`, or when
OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP); otherwise tracing stays
off and costs nothing (runtime.tracing). The SDK itself reads the rest:
OTEL_SERVICE_NAME (default here: sluice-<role>), OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER and its argument, the exporter's endpoint and headers.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from runtime import tracing
from streams.errors import ConfigurationError


def configure(role: str, environ: Mapping[str, str], mode: tracing.Mode) -> TracerProvider | None:
    """Install a tracer provider if the environment asks for traces; returns it, to
    be shut down (flushing what is buffered) when the process stops."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    exporter_name = environ.get("OTEL_TRACES_EXPORTER") or (
        "otlp" if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
    )
    exporter: SpanExporter
    if exporter_name == "none":
        return None
    if exporter_name == "otlp":
        exporter = OTLPSpanExporter()
    elif exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r}: Sluice exports otlp, console or none"
        )
    name = environ.get("OTEL_SERVICE_NAME") or f"sluice-{role}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracing.use(provider, mode)
    # A handler's outgoing HTTP calls (a webhook) carry the trace on.
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    return provider
