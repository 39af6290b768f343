"""The OpenAPI 3.1 document, generated from the route table and the msgspec types
of its bodies; never written by hand. Each topic gets its own publish path, with
the input type of the functions it routes to as `data`, and their declared
`example` as the example of its input and of its body (what /docs fills in)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from sluice.runtime.ingress.bodies import events_of
from sluice.runtime.ingress.problems import CONTENT_TYPE as PROBLEM
from sluice.runtime.ingress.problems import ProblemBody
from sluice.runtime.ingress.routes import JSON, Route
from sluice.runtime.registry import Registry

_PARAM = re.compile(r"\{(\w+)\}")
_ERRORS = {
    400: "Malformed body",
    401: "No or unknown API key",
    403: "The key may not do this",
    404: "Not found (or another workspace's)",
    413: "Body too large",
    415: "Wrong content type",
    422: "Invalid request, with the field paths",
    503: "Redis unavailable: retry after Retry-After seconds",
}
# The groups in the order /docs shows them; the routes kept for apps migrating
# from BullMQ's queue service (paths under /api/) last, apart from the API proper.
_TAGS = {
    "events": "Publish events: one per topic, its body typed with the topic's input",
    "jobs": "Find, cancel and reschedule jobs",
    "schedules": "Repeatable jobs",
    "queues": "Counts, pause and resume per function",
    "dead letters": "Jobs out of attempts: read and replay",
    "metrics": "Job metrics, and Prometheus text",
    "limits": "Rate limits and deferrals",
    "webhooks": "Webhook endpoints per workspace",
    "health": "Liveness and readiness probes",
    "dashboard": "The pages for people",
    "migration": "Routes of the BullMQ-based service Sluice replaces, in its shapes (MIGRATING.md)",
}
# The workspace of the example events: any the reader's key has will do.
EXAMPLE_WORKSPACE = "acme"


def examples(registry: Registry) -> dict[str, Any]:
    """Topic -> the example input of its functions (the first one declared), as JSON."""
    found = {}
    for topic, functions in registry.by_topic.items():
        declared = [fn.example for fn in functions if fn.example is not None]
        if declared:
            found[topic] = msgspec.json.decode(msgspec.json.encode(declared[0]))
    return found


def topic_routes(routes: Sequence[Route], registry: Registry) -> list[Route]:
    """The publish route once per topic, typed with that topic's input."""
    (publish,) = [r for r in routes if r.path == "/v1/events/{topic}"]
    out = []
    for topic, functions in sorted(registry.by_topic.items()):
        _, body = events_of(functions[0].input)
        out.append(
            dataclasses.replace(
                publish, path=f"/v1/events/{topic}", summary=f"Publish {topic} events", body=body
            )
        )
    return out


def document(routes: Sequence[Route], registry: Registry) -> dict[str, Any]:
    described = [r for r in routes if r.path != "/v1/events/{topic}"]
    described += topic_routes(routes, registry)
    # Each topic's input, to find the component msgspec names it by: its class name,
    # or its full path when two inputs share a name (booking.Cancel, campaign.Cancel).
    inputs_of = {topic: functions[0].input for topic, functions in registry.by_topic.items()}
    types: list[Any] = [ProblemBody, *inputs_of.values()]
    for route in described:
        if route.body is not None:
            types.append(route.body)
        for kind in route.replies.values():
            if isinstance(kind, tuple):
                types += kind
            elif kind is not None and not isinstance(kind, str):
                types.append(kind)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip(map(id, types), schemas, strict=True))
    for schema in schemas:
        # One event before an array of them: what a form generated from the schema shows first.
        schema.get("anyOf", []).sort(key=lambda s: s.get("type") == "array")
    inputs = examples(registry)
    for topic, example in inputs.items():
        name = schema_of[id(inputs_of[topic])]["$ref"].rsplit("/", 1)[1]
        components[name].setdefault("examples", [example])
    problem = {PROBLEM: {"schema": schema_of[id(ProblemBody)]}}
    paths: dict[str, dict[str, Any]] = {}
    for route in described:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": f"{route.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', route.path)}",
            "parameters": [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in _PARAM.findall(route.path)
            ]
            + [
                {
                    "name": name,
                    "in": "query",
                    "description": text,
                    "schema": msgspec.json.schema(kind),
                }
                for name, (kind, text) in route.query.items()
            ]
            + [
                {"name": name, "in": "header", "description": text, "schema": {"type": "string"}}
                for name, text in route.headers.items()
            ],
            "responses": {},
        }
        if route.access != "public":
            operation["security"] = [{"apiKey": []}]
        if route.body is not None:
            content = {JSON: {"schema": schema_of[id(route.body)]}}
            topic = route.path.removeprefix("/v1/events/")
            if topic in inputs:
                example = {"workspace": EXAMPLE_WORKSPACE, "data": inputs[topic]}
                content[JSON]["example"] = example
            for media in route.also_accepts:
                content[media] = {
                    "schema": {"type": "string", "description": "one JSON event per line"}
                }
            operation["requestBody"] = {"required": True, "content": content}
        for status, kind in route.replies.items():
            answer: dict[str, Any] = {"description": "OK" if status < 300 else "Error"}
            if isinstance(kind, str):
                answer["content"] = {kind: {"schema": {"type": "string"}}}
            elif isinstance(kind, tuple):
                answer["content"] = {JSON: {"schema": {"oneOf": [schema_of[id(k)] for k in kind]}}}
            elif kind is not None:
                answer["content"] = {JSON: {"schema": schema_of[id(kind)]}}
            operation["responses"][str(status)] = answer
        for status, text in {**_ERRORS, **route.errors}.items():
            operation["responses"].setdefault(
                str(status), {"description": text, "content": problem}
            )
        paths.setdefault(_PARAM.sub(lambda m: "{" + m[1] + "}", route.path), {})[
            route.method.lower()
        ] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice",
            "version": "1",
            "description": "Publish events to handler functions on Redis Streams; "
            "inspect and manage their jobs.",
        },
        "tags": [
            {"name": name, "description": text}
            for name, text in _TAGS.items()
            if any(r.tag == name for r in described)
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
