"""pytest fixtures for end-to-end tests of one's own functions against a private
redis-server (started on a free port, never 6379; `redis-server` must be on PATH).

Enable them in the conftest.py at the root of the tests:

    pytest_plugins = ["sluice.runtime.testing.pytest"]

`sluice_redis_server` is one server for the session (a `RedisServer`: `url`,
`kill`, `pause`, `resume`, `restart`); `sluice_redis_url` is its URL, emptied
(FLUSHALL) before each test that asks for it. Sync fixtures: they need no
particular async test plugin.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sluice.runtime.testing.redis import RedisServer


@pytest.fixture(scope="session")
def sluice_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session, AOF off (nothing to keep between runs)."""
    server = RedisServer(tmp_path_factory.mktemp("sluice-redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sluice_redis_url(sluice_redis_server: RedisServer) -> str:
    """The session server's URL, every database emptied first."""
    sluice_redis_server.flush()
    return sluice_redis_server.url
