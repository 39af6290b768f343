"""What the ingress tells about its requests: SERVER spans with the current HTTP
semantic conventions, none for the excluded routes (probes, scrapes, the
dashboard's polling); CLIENT spans of handlers' aiohttp calls with the same
conventions; an access log line per request when asked for, none otherwise."""

from __future__ import annotations

import logging

import aiohttp
import msgspec
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from sluice.runtime.settings import from_env
from sluice.runtime.telemetry import logs
from sluice.streams.connection import Redis
from tests.ingress.conftest import start_api
from tests.redis_server import RedisServer

# The attributes of the old conventions, which the stable ones replaced.
OLD = {"http.method", "http.url", "http.status_code", "http.target", "net.peer.name",
       "http.host", "http.scheme"}  # fmt: skip


async def test_server_and_client_spans_use_the_stable_http_conventions_and_skip_excluded_routes(
    redis: Redis, shared_server: RedisServer, spans: InMemorySpanExporter
) -> None:
    exclude = from_env({}).trace_exclude
    assert {"/healthz", "/readyz", "/metrics", "GET /v1/queues", "GET /v1/metrics"} <= set(exclude)
    api = await start_api(redis, shared_server.url, trace_exclude=exclude)
    port = api.http.port
    try:
        for path in ("/healthz", "/readyz", "/v1/queues", "/v1/metrics", "/metrics"):
            assert (await api.http.get(path, headers=api.auth("admin"))).status == 200, path
        # (The test's own client is traced too: its CLIENT spans are no server's.)
        assert [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER] == []
        answer = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}})
        assert answer.status == 202
        # A handler's call to another service, as functions/provider.py makes it.
        async with (
            aiohttp.ClientSession() as session,
            session.get(api.http.make_url("/healthz?from=handler")) as reply,
        ):
            assert reply.status == 200
    finally:
        await api.http.close()
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.name == "POST /v1/events/{topic}"
    attributes = dict(server.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/v1/events/{topic}"
    assert attributes["url.path"] == "/v1/events/tasks"
    assert attributes["url.scheme"] == "http"
    assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
    assert attributes["http.response.status_code"] == 202
    assert not OLD & set(attributes)
    called = f"http://127.0.0.1:{port}/healthz?from=handler"
    (client,) = [
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.CLIENT and (s.attributes or {}).get("url.full") == called
    ]
    attributes = dict(client.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
    assert attributes["http.response.status_code"] == 200
    assert not OLD & set(attributes)


async def test_an_access_log_line_per_request_when_on_and_none_when_off(
    redis: Redis, shared_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.access")
    quiet = await start_api(redis, shared_server.url)
    try:
        assert (await quiet.http.get("/healthz")).status == 200
    finally:
        await quiet.http.close()
    assert [r for r in caplog.records if r.name == "sluice.access"] == []
    api = await start_api(redis, shared_server.url, access_log=True)
    try:
        answer = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}})
        assert answer.status == 202
        assert (await api.http.get("/v1/jobs/nope", headers=api.auth("other"))).status == 404
        assert (await api.http.get("/healthz")).status == 200
    finally:
        await api.http.close()
    lines = [
        msgspec.json.decode(logs.JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "sluice.access"
    ]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/v1/events/tasks", 202),
        ("GET", "/v1/jobs/nope", 404),
        ("GET", "/healthz", 200),
    ]
    assert [line.get("workspace") for line in lines] == ["acme", "other", None]
    assert all(line["duration_ms"] >= 0 and line["level"] == "info" for line in lines)
    assert lines[0]["message"].startswith("POST /v1/events/tasks 202 ")
