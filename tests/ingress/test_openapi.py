"""The OpenAPI document describes every route from the types that validate them, and
arbitrary input to any route gets no 5xx: a declared answer, or a problem."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swagger_ui_bundle import swagger_ui_path

from functions.email import send_email
from functions.sms import send_sms
from sluice.runtime import Job, function
from sluice.runtime.ingress.app import ROUTES
from sluice.runtime.ingress.openapi import document
from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.keys import given_id
from tests.ingress.conftest import Api, start_api
from tests.redis_server import RedisServer
from tests.runtime.helpers import read_ledger, wait_until, worker_in_process


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
    to = schemas["Sms"]["properties"]["to"]
    assert (to["maxLength"], "E.164" in to["description"]) == (64, True)
    # A job shows its input; the listing's function is optional.
    assert "data" in schemas["JobRecord"]["properties"]
    listing = spec["paths"]["/v1/jobs"]["get"]["parameters"]
    assert [p.get("required", False) for p in listing if p["name"] == "function"] == [False]
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
                          "tags", "priority", "n", "to", "body", "rate_per_s", "ids", "cron",
                          "zone", "every_ms", "start", "end", "limit"])  # fmt: skip
# Bodies shaped like the real ones often enough to get past the first check.
BODIES = JSON | st.dictionaries(FIELDS, JSON, max_size=6)
PARAMS = st.sampled_from(["tasks", "sms.send", "acme", "other", "nobody", "a b", "%00", "x" * 200])


def test_no_input_gets_a_server_error(shared_server: RedisServer) -> None:
    runner = asyncio.Runner()
    redis = connect(RedisSettings(url=shared_server.url))
    api = runner.run(start_api(redis, shared_server.url))
    try:
        spec = runner.run(document_of(api))

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            route=st.sampled_from(ROUTES),
            who=st.sampled_from(["admin", "acme"]),
            params=st.fixed_dictionaries(
                dict.fromkeys(("topic", "id", "function", "workspace", "name", "tag"), PARAMS)
            ),
            body=BODIES,
            query=st.dictionaries(
                st.sampled_from(["function", "state", "limit", "cursor", "workspace", "runs"]),
                st.text(max_size=8),
                max_size=3,
            ),
        )
        def check(
            route: Any, who: str, params: dict[str, str], body: object, query: dict[str, str]
        ) -> None:
            path = re.sub(r"\{(\w+)\}", lambda m: params[m[1]], route.path)
            status = runner.run(answer_of(api, route, who, path, body, query))
            assert status in documented(spec, route), (route.method, route.path, status)

        check()
    finally:
        runner.run(api.http.close())
        runner.run(redis.aclose())
        runner.close()


async def document_of(api: Api) -> dict[str, Any]:
    spec: dict[str, Any] = await (await api.http.get("/openapi.json")).json()
    return spec


def documented(spec: dict[str, Any], route: Any) -> set[int]:
    """The statuses the document gives for `route` (a topic's for the publish route)."""
    path = route.path.replace("{topic}", "tasks")
    return {int(status) for status in spec["paths"][path][route.method.lower()]["responses"]}


async def answer_of(
    api: Api, route: Any, who: str, path: str, body: object, query: dict[str, str]
) -> int:
    answer = await api.http.request(
        route.method, path, json=body, params=query, headers=api.auth(who)
    )
    data = await answer.read()
    assert answer.status < 500, (route.path, body, data)
    if answer.status >= 400:
        assert answer.content_type == "application/problem+json"
        problem = msgspec.json.decode(data)
        assert problem["status"] == answer.status
        return answer.status
    declared = route.replies.get(answer.status, "undeclared")
    assert declared != "undeclared", (route.path, answer.status)
    if declared is None:
        assert data == b""
        return answer.status
    if isinstance(declared, str):
        assert answer.content_type == declared
        return answer.status
    kinds = declared if isinstance(declared, tuple) else (declared,)
    errors = []
    for kind in kinds:
        try:
            msgspec.json.decode(data, type=kind)
            return answer.status
        except msgspec.ValidationError as exc:
            errors.append(exc)
    raise AssertionError(f"{route.path}: {data!r} matches no declared body: {errors}")


async def test_every_status_the_job_routes_answer_is_documented(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    spec = await document_of(api)
    acme = api.auth("acme")
    seen: list[tuple[str, int]] = []

    async def call(method: str, job_id: str, body: object = None) -> None:
        answer = await api.http.request(method, f"/v1/jobs/{job_id}", json=body, headers=acme)
        seen.append((method, answer.status))

    queued = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}, "id": "q"})
    assert queued.status == 202
    await call("PATCH", "q", {"delay_ms": 1000})  # queued: only a delayed job moves
    await call("PATCH", "q", {"delay_ms": -1})
    await call("PATCH", "nope", {"delay_ms": 1})
    await call("DELETE", "nope")
    await call("GET", "nope")
    async with worker_in_process(shared_server.url, "tasks"):

        async def ran() -> bool:
            # The handler sees the stored id: ids given are per workspace.
            return read_ledger(ledger)[given_id("acme", "q")] == 1

        await wait_until(ran, what="the job to run")
    await call("DELETE", "q")  # completed: too late to cancel
    assert ("PATCH", 409) in seen
    assert ("DELETE", 409) in seen
    route = {r.method: r for r in ROUTES if r.path == "/v1/jobs/{id}"}
    for method, status in seen:
        assert status in documented(spec, route[method]), (method, status)
    conflict = spec["paths"]["/v1/jobs/{id}"]["patch"]["responses"]["409"]
    assert conflict["content"]["application/problem+json"]


def as_json(value: object) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def refs(node: object) -> set[str]:
    """Every component a piece of the document names."""
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if "$ref" in node else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


async def test_every_body_has_a_schema_and_each_topic_its_functions_example(api: Api) -> None:
    spec = await document_of(api)
    schemas = spec["components"]["schemas"]
    assert refs(spec["paths"]) | refs(schemas) <= set(schemas)
    for route in ROUTES:
        path = route.path.replace("{topic}", "sms.send")
        operation = spec["paths"][path][route.method.lower()]
        if route.body is not None:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert refs(schema), (route.method, path)
        for status, kind in route.replies.items():
            answer = operation["responses"][str(status)]
            if kind is None:
                assert "content" not in answer
            elif not isinstance(kind, str):
                assert refs(answer["content"]["application/json"]["schema"]), (path, status)
    # The input types carry their function's example, and the publish body an event with it.
    assert schemas["Sms"]["examples"] == [as_json(send_sms.example)]
    for topic, fn in (("sms.send", send_sms), ("email.send", send_email)):
        body = spec["paths"][f"/v1/events/{topic}"]["post"]["requestBody"]["content"]
        example = body["application/json"]["example"]
        assert example["data"] == as_json(fn.example)
    # A topic whose functions give no example still gets one event, not an array.
    tasks = spec["paths"]["/v1/events/tasks"]["post"]["requestBody"]["content"]
    assert "$ref" in tasks["application/json"]["schema"]["anyOf"][0]
    # The routes kept for apps migrating from BullMQ are a group of their own, listed last.
    assert spec["paths"]["/api/schedule-sms"]["post"]["tags"] == ["migration"]
    assert spec["paths"]["/api/metrics"]["get"]["tags"] == ["migration"]
    assert spec["tags"][-1]["name"] == "migration"
    used = {op["tags"][0] for methods in spec["paths"].values() for op in methods.values()}
    assert used == {tag["name"] for tag in spec["tags"]}


async def test_the_publish_example_of_the_docs_is_accepted(api: Api) -> None:
    spec = await document_of(api)
    for topic in ("sms.send", "email.send"):
        body = spec["paths"][f"/v1/events/{topic}"]["post"]["requestBody"]["content"]
        answer = await api.post(f"/v1/events/{topic}", body["application/json"]["example"])
        assert answer.status == 202, await answer.text()


async def test_the_docs_page_loads_swagger_ui_served_from_its_package(api: Api) -> None:
    page = await api.http.get("/docs")
    assert page.status == 200
    html = await page.text()
    assets = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
              "docs.js": "text/javascript"}  # fmt: skip
    for name, media in assets.items():
        assert f'"/docs/assets/{name}"' in html
        asset = await api.http.get(f"/docs/assets/{name}")
        assert (asset.status, asset.content_type) == (200, media), name
        if name != "docs.js":
            assert await asset.read() == (swagger_ui_path / name).read_bytes()
    # Nothing but those: no file of the package, nor any other, by another name.
    for name in ("index.html", "../docs.html", "%2e%2e%2fdocs.html", "swagger-ui.js.map"):
        assert (await api.http.get(f"/docs/assets/{name}")).status == 404, name


def _named_input(module: str, name: str) -> type[msgspec.Struct]:
    """An input type called `name`, as if declared in `module`."""
    kind = msgspec.defstruct(name, [("n", int)])
    kind.__module__ = module
    return kind


def test_functions_whose_inputs_share_a_class_name_get_one_schema_each() -> None:
    first = _named_input("functions.booking", "Cancel")
    second = _named_input("functions.campaign", "Cancel")

    async def handle(job: Job[Any]) -> None:
        return None

    registry = Registry(
        [
            function("booking.cancel", input=first, example=first(n=1))(handle),
            function("campaign.cancel", input=second, example=second(n=2))(handle),
        ]
    )
    spec = document(ROUTES, registry)
    schemas = spec["components"]["schemas"]
    for topic, n in (("booking.cancel", 1), ("campaign.cancel", 2)):
        body = spec["paths"][f"/v1/events/{topic}"]["post"]["requestBody"]["content"]
        assert body["application/json"]["example"]["data"] == {"n": n}
        (one, _) = body["application/json"]["schema"]["anyOf"]
        event = schemas[one["$ref"].rsplit("/", 1)[1]]
        data = schemas[event["properties"]["data"]["$ref"].rsplit("/", 1)[1]]
        assert data["examples"] == [{"n": n}]
