"""Fixtures: real redis-server processes on free ports, never a stand-in, never 6379."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.telemetry import tracing
from runtime.testing.redis import RedisServer
from streams.connection import Redis, RedisSettings, connect

# The library's fixtures (sluice_redis_server, ...), as users' own tests get them.
pytest_plugins = ["runtime.testing.pytest"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run the long chaos and soak versions")


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


@pytest.fixture(scope="session")
def shared_server(sluice_redis_server: RedisServer) -> RedisServer:
    """One server for the whole session (the library's fixture); tests that break
    their server get their own."""
    return sluice_redis_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server this test may kill, pause or restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    if server.process is not None:
        server.resume()
        server.stop()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the sample functions record handled job ids in, for in-process workers."""
    path = tmp_path / "ledger"
    monkeypatch.setenv("LEDGER_FILE", str(path))
    return path


def settings_for(url: str, **overrides: object) -> RedisSettings:
    return RedisSettings(url=url, connect_timeout_s=0.5, socket_timeout_s=2.0, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def redis(shared_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the shared server, emptied before each test."""
    client = connect(settings_for(shared_server.url))
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans kept in memory: the server's, the handlers', and (as
    runtime.telemetry.export sets up) outgoing aiohttp calls'."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    tracing.instrument_client(provider)
    yield exporter
    tracing.uninstrument_client()
    tracing.use(None)
