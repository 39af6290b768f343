"""The OpenAPI document describes every route from the types that validate them, and
arbitrary input to any route gets no 5xx: a declared answer, or a problem."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.ingress.app import ROUTES
from streams.connection import RedisSettings, connect
from tests.ingress.conftest import Api, start_api
from tests.redis_server import RedisServer


async def test_the_document_lists_every_route_and_each_topic(api: Api) -> None:
    answer = await api.http.get("/openapi.json")
    assert answer.status == 200
    spec = await answer.json()
    assert spec["openapi"] == "3.1.0"
    for route in ROUTES:
        if route.path != "/v1/events/{topic}":
            assert route.method.lower() in spec["paths"][route.path], route.path
    # Each topic's publish names its input type, generated from the Struct.
    sms = spec["paths"]["/v1/events/sms.send"]["post"]
    assert sms["security"] == [{"apiKey": []}]
    schemas = spec["components"]["schemas"]
    (event_schema,) = [
        s for name, s in schemas.items() if name.startswith("EventBody") and "Sms" in name
    ]
    assert event_schema["properties"]["data"] == {"$ref": "#/components/schemas/Sms"}
    assert schemas["Sms"]["properties"]["to"]["pattern"].startswith("^\\+")
    assert "422" in sms["responses"]
    (idempotency,) = [p for p in sms["parameters"] if p["name"] == "Idempotency-Key"]
    assert idempotency["in"] == "header"
    assert "/healthz" in spec["paths"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(["workspace", "data", "id", "delay_ms", "run_at", "expires_at", "key",
                          "tags", "priority", "n", "to", "body", "rate_per_s", "ids"])  # fmt: skip
# Bodies shaped like the real ones often enough to get past the first check.
BODIES = JSON | st.dictionaries(FIELDS, JSON, max_size=6)
PARAMS = st.sampled_from(["tasks", "sms.send", "acme", "other", "nobody", "a b", "%00", "x" * 200])


def test_no_input_gets_a_server_error(shared_server: RedisServer) -> None:
    runner = asyncio.Runner()
    redis = connect(RedisSettings(url=shared_server.url))
    api = runner.run(start_api(redis, shared_server.url))
    try:

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            route=st.sampled_from(ROUTES),
            who=st.sampled_from(["admin", "acme"]),
            params=st.fixed_dictionaries(
                dict.fromkeys(("topic", "id", "function", "workspace"), PARAMS)
            ),
            body=BODIES,
            query=st.dictionaries(
                st.sampled_from(["function", "state", "limit", "cursor", "workspace"]),
                st.text(max_size=8),
                max_size=3,
            ),
        )
        def check(
            route: Any, who: str, params: dict[str, str], body: object, query: dict[str, str]
        ) -> None:
            path = re.sub(r"\{(\w+)\}", lambda m: params[m[1]], route.path)
            runner.run(answer_of(api, route, who, path, body, query))

        check()
    finally:
        runner.run(api.http.close())
        runner.run(redis.aclose())
        runner.close()


async def answer_of(
    api: Api, route: Any, who: str, path: str, body: object, query: dict[str, str]
) -> None:
    answer = await api.http.request(
        route.method, path, json=body, params=query, headers=api.auth(who)
    )
    data = await answer.read()
    assert answer.status < 500, (route.path, body, data)
    if answer.status >= 400:
        assert answer.content_type == "application/problem+json"
        problem = msgspec.json.decode(data)
        assert problem["status"] == answer.status
        return
    declared = route.replies.get(answer.status, "undeclared")
    assert declared != "undeclared", (route.path, answer.status)
    if declared is None:
        assert data == b""
        return
    if isinstance(declared, str):
        assert answer.content_type == declared
        return
    kinds = declared if isinstance(declared, tuple) else (declared,)
    errors = []
    for kind in kinds:
        try:
            msgspec.json.decode(data, type=kind)
            return
        except msgspec.ValidationError as exc:
            errors.append(exc)
    raise AssertionError(f"{route.path}: {data!r} matches no declared body: {errors}")
