"""Fixtures: real redis-server processes on free ports, never a stand-in, never 6379."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sluice.runtime.telemetry import tracing
from sluice.runtime.testing.redis import RedisServer
from sluice.streams.connection import Redis, RedisSettings, connect
from tests.redis_cluster import RedisCluster, running_cluster

# The library's fixtures (sluice_redis_server, ...), as users' own tests get them.
pytest_plugins = ["sluice.runtime.testing.pytest"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run the long chaos and soak versions")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` run only with --long (`./local.sh test --long`)."""
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="slow: runs with --long")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--long"))


@pytest.fixture(scope="session")
def shared_server(sluice_redis_server: RedisServer) -> RedisServer:
    """One server for the whole session (the library's fixture); tests that break
    their server get their own."""
    return sluice_redis_server


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One local 3-master Redis Cluster for the session, started when first asked for."""
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
async def cluster_redis(shared_cluster: RedisCluster) -> AsyncIterator[Redis]:
    """A client of the shared cluster, every node emptied before each test."""
    shared_cluster.flush()
    client = connect(settings_for(shared_cluster.url))
    yield client
    await client.aclose()


BOTH = ["server", pytest.param("cluster", marks=pytest.mark.cluster)]
# For a longer test: on the cluster only with --long
# (`@pytest.mark.parametrize("target", SLOW_ON_CLUSTER, indirect=True)`).
SLOW_ON_CLUSTER = ["server", pytest.param("cluster", marks=[pytest.mark.cluster, pytest.mark.slow])]


@pytest.fixture(params=BOTH)
def any_redis(request: pytest.FixtureRequest) -> Redis:
    """The shared single server's client, then the shared cluster's: for tests of what
    must hold on both."""
    name = "server_redis" if request.param == "server" else "cluster_redis"
    client: Redis = request.getfixturevalue(name)
    return client


class Target(NamedTuple):
    """A Redis to run workers against: a client of it (emptied) and its URL."""

    redis: Redis
    url: str


@pytest.fixture(params=BOTH)
def target(request: pytest.FixtureRequest) -> Target:
    """The shared single server, then the shared 3-master cluster: the core tests
    that must pass on both, in every run."""
    return target_for(request)


@pytest.fixture(params=SLOW_ON_CLUSTER)
def long_target(request: pytest.FixtureRequest) -> Target:
    """The shared single server in every run, the shared 3-master cluster too with
    --long: the rest of the core, lifecycle, rate-limit and chaos suites. A module
    runs all its tests on both by overriding `redis` with `long_target.redis`
    (`server_redis` stays the single server's, for what cannot run on a cluster)."""
    return target_for(request)


def target_for(request: pytest.FixtureRequest) -> Target:
    # server_redis, not redis: a module's own `redis` may be this target's.
    if request.param == "server":
        server: RedisServer = request.getfixturevalue("shared_server")
        return Target(request.getfixturevalue("server_redis"), server.url)
    cluster: RedisCluster = request.getfixturevalue("shared_cluster")
    return Target(request.getfixturevalue("cluster_redis"), cluster.url)


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
async def server_redis(shared_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the shared server, emptied before each test."""
    client = connect(settings_for(shared_server.url))
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def redis(server_redis: Redis) -> Redis:
    """The shared server's client (a module whose tests run on the cluster too
    overrides it with `long_target.redis`)."""
    return server_redis


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
