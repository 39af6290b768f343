"""An ingress app on a real aiohttp server over loopback, against the shared Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import BaseRunner

from functions.email import send_email
from functions.sms import send_sms
from sluice.runtime.health import RedisHealth
from sluice.runtime.ingress import services
from sluice.runtime.ingress.app import build_app
from sluice.runtime.ingress.auth import KeyRing, new_key
from sluice.runtime.ingress.server import IngressRunner
from sluice.runtime.registry import Registry, load
from sluice.streams.connection import Redis
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE

MAX_BODY = 64 * 1024


@dataclass
class Api:
    """The test client and one key of each kind: admin, workspace acme, workspace other."""

    http: TestClient[Any, Any]
    keys: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def post(self, path: str, body: object, who: str = "acme") -> ClientResponse:
        return await self.http.post(path, json=body, headers=self.auth(who))


class IngressServer(TestServer):
    """aiohttp's test server, run as `sluice ingress` runs the app."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return IngressRunner(self.app, **kwargs)


def registry() -> Registry:
    return Registry([*load(SAMPLE), send_sms, send_email])


async def start_api(redis: Redis, url: str, write_timeout_s: float = 2.0, **options: Any) -> Api:
    """`options`: build_app's keyword arguments (tracing exclusions, the access log)."""
    keys, stored = {}, []
    for who, workspaces, admin in (
        ("admin", (), True),
        ("acme", ("acme",), False),
        ("other", ("other",), False),
    ):
        keys[who], key = new_key(who, workspaces, admin)
        stored.append(key)
    built = services(redis, registry(), KeyRing(stored), RedisHealth(url), write_timeout_s)
    server = IngressServer(build_app(built, MAX_BODY, **options), host="127.0.0.1")
    await server.start_server()
    http = TestClient(server)
    await http.start_server()
    return Api(http, keys)


@pytest.fixture
async def api(redis: Redis, shared_server: RedisServer) -> AsyncIterator[Api]:
    started = await start_api(redis, shared_server.url)
    yield started
    await started.http.close()
