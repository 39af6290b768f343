"""A failing handler's traceback is kept with each failed attempt: in the job's
record while it waits for its retry, in its dead letter, in the JSON log line and
on its span; bounded, and stored for no job that never failed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sluice.runtime import Client, DeadLetters
from sluice.runtime.declare import Failure
from sluice.runtime.registry import load
from sluice.runtime.telemetry import logs, tracing
from sluice.streams import envelope as env
from sluice.streams import record as record_format
from sluice.streams.connection import Redis
from sluice.streams.jobs import JobRecord, get_job
from sluice.streams.keys import PartitionKeys
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE, total_counts, wait_until, worker_in_process

RETRY = PartitionKeys("retry-tasks", 0)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


def _names_the_handler(traceback: str) -> bool:
    # tests/sample_functions.py: _run calls _act, which raises.
    return (
        "in _run" in traceback
        and "in _act" in traceback
        and traceback.rstrip().endswith("ValueError: task 1 refused")
    )


async def test_a_traceback_is_kept_through_retry_and_dead_letter(
    redis: Redis,
    shared_server: RedisServer,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client(redis, load(SAMPLE))
    receipt = await client.publish("retry-tasks", workspace="ws", data={"n": 1, "mode": "raise"})
    never_failed = await client.publish(
        "retry-tasks", workspace="ws", data={"n": 2}, delay_ms=600_000
    )
    caplog.set_level(logging.WARNING, logger="sluice.runtime.worker.invoke")
    async with worker_in_process(shared_server.url, "retry-tasks", scheduler=True):
        seen: list[JobRecord] = []

        async def retrying() -> bool:
            record = await get_job(redis, RETRY, receipt.id)
            seen[:] = [record] if record is not None and record.state == "delayed" else []
            return bool(seen)

        await wait_until(retrying, what="a retry")
        # Waiting for its next attempt (backoff may have been near 0 for one).
        (waiting,) = seen
        assert len(waiting.failures) == waiting.attempts
        assert {f.error for f in waiting.failures} == {"ValueError: task 1 refused"}
        assert all(_names_the_handler(f.traceback) for f in waiting.failures)

        async def dead() -> bool:
            return (await total_counts(redis, "retry-tasks")).dead == 1

        await wait_until(dead, what="the job to be dead-lettered")
    (letter,) = await DeadLetters(redis, load(SAMPLE)).read("retry-tasks")
    assert len(letter.envelope.tracebacks) == 3
    assert all(_names_the_handler(t) for t in letter.envelope.tracebacks)
    record = await get_job(redis, RETRY, receipt.id)
    assert record is not None
    assert record.state == "dead"
    assert [f.error for f in record.failures] == ["ValueError: task 1 refused"] * 3
    assert all(_names_the_handler(f.traceback) for f in record.failures)

    # A job that never failed stores no traceback, not even an empty field.
    stored = await redis.hget(RETRY.jobs, never_failed.id)
    assert isinstance(stored, bytes)
    delayed = env.decode(record_format.parse(stored).tail)
    assert delayed.tracebacks == ()
    assert env.encode(delayed) == env.encode(msgspec.structs.replace(delayed, errors=()))

    logged = [r for r in caplog.records if r.exc_info and "job " in r.getMessage()]
    assert len(logged) == 3
    line = json.loads(logs.JsonFormatter().format(logged[0]))
    assert _names_the_handler(line["exception"])

    failed = [s for s in spans.get_finished_spans() if s.name == "process retry-tasks"]
    assert len(failed) == 3
    for span in failed:
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        stacktrace = event.attributes["exception.stacktrace"]
        assert isinstance(stacktrace, str)
        assert _names_the_handler(stacktrace)


def _recurse(depth: int) -> None:
    if depth == 0:
        raise ValueError("x" * 7_000)
    _recurse(depth - 1)


def test_a_traceback_keeps_its_innermost_20_frames_within_8_kib() -> None:
    try:
        _recurse(60)
    except ValueError as exc:
        failure = Failure.of(exc)
    text = failure.traceback
    assert len(text.encode()) <= 8 * 1024
    assert text.count("in _recurse") <= 20
    # The innermost frames and the exception are kept: the end of the text.
    assert "raise ValueError" in text
    assert text.rstrip().endswith("x" * 7_000)
