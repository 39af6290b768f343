"""OpenTelemetry metrics observed where jobs run: handler call time, end-to-end
latency (publish to handler start, first attempts), lateness (due time to
handler start, for jobs published for later, retries and repeat ticks), and
settled jobs by outcome. Labelled by function only, so series stay bounded.

Off until a meter provider is installed (runtime.telemetry.export exports over OTLP;
a test reads its own); while off, the loop skips every call here. Counts of the
whole deployment, from Redis, are on the ingress's /metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from opentelemetry.metrics import Counter, Histogram, MeterProvider

from sluice.streams import envelope as env
from sluice.streams.settle import Completed, Dead, Deferred, Expired, Outcome, Retried


class _Instruments:
    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("sluice")
        self.duration: Histogram = meter.create_histogram(
            "sluice.handler.duration", "ms", "time of one handler call (one job or a batch)"
        )
        self.latency: Histogram = meter.create_histogram(
            "sluice.job.latency", "ms", "from publish to the start of a job's first attempt"
        )
        self.lateness: Histogram = meter.create_histogram(
            "sluice.job.lateness", "ms", "from a job's due time to the start of its handler"
        )
        self.settled: Counter = meter.create_counter(
            "sluice.jobs.settled", "1", "jobs settled, by outcome"
        )


class _State:
    instruments: _Instruments | None = None


_state = _State()


def use(provider: MeterProvider | None) -> None:
    _state.instruments = None if provider is None else _Instruments(provider)


def enabled() -> bool:
    return _state.instruments is not None


def started(function: str, envelopes: Sequence[env.Envelope], now_ms: int) -> None:
    """A handler call starts on `envelopes`."""
    found = _state.instruments
    if found is None:
        return
    labels = {"function": function}
    for e in envelopes:
        if e.attempt == 1:
            found.latency.record(max(0, now_ms - e.created_ms), labels)
        if e.due_ms:
            found.lateness.record(max(0, now_ms - e.due_ms), labels)


def called(function: str, duration_s: float) -> None:
    found = _state.instruments
    if found is not None:
        found.duration.record(duration_s * 1000, {"function": function})


def settled(function: str, outcomes: Sequence[Outcome], fenced: set[str]) -> None:
    found = _state.instruments
    if found is None:
        return
    for o in outcomes:
        if o.entry_id not in fenced:
            found.settled.add(1, {"function": function, "outcome": _label(o)})


def _label(outcome: Outcome) -> str:
    """The outcome's label on `sluice.jobs.settled`."""
    match outcome:
        case Completed():
            return "completed"
        case Retried():
            return "retry"
        case Deferred():
            return "defer"
        case Dead():
            return "dead"
        case Expired():
            return "expired"
        case _:
            assert_never(outcome)
