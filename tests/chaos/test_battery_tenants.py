"""The fault battery, tenants: every route of the ingress asked by every kind of
caller, about another workspace's things.

Tenant A (workspace acme) has jobs (a given id, a generated one, one published
through the BullMQ routes with an Idempotency-Key), a schedule and a webhook
endpoint, all marked with a string only A ever sends. Then every route of the
table (runtime.ingress.app.ROUTES) is called with no key, malformed keys, a
revoked key, tenant B's key (naming A's workspace, and in its own scope with
A's ids), A's own key and an admin key. The expected class of each answer
follows from the route's access and what the request names; no answer to
anyone but A and the admin may hold A's data; B reusing A's ids and idempotency
keys gets jobs of its own, and A's things are as A left them.

The negative control opens the workspace check (`ApiKey.may` answers yes to
everything, a broken copy of it) and asserts that the matrix then fails.
"""

from __future__ import annotations

import collections
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sluice.runtime.health import RedisHealth
from sluice.runtime.ingress import services
from sluice.runtime.ingress.app import ROUTES, build_app
from sluice.runtime.ingress.auth import ApiKey, KeyRing
from sluice.runtime.ingress.routes import Route
from sluice.streams.connection import Redis
from tests.chaos.conftest import Reported
from tests.chaos.security import Keys, Tally
from tests.ingress.conftest import MAX_BODY, IngressServer, registry
from tests.redis_server import RedisServer

pytestmark = pytest.mark.chaos

Report = Callable[[Reported], None]

# In every piece of data A sends, never in B's: an answer to B holding it leaks.
MARK = "acme-private-7f3a"
HOUR_MS = 3_600_000
# Path parameters naming A's things ({workspace} and {id} are filled per request).
PARAMS = {"topic": "tasks", "function": "tasks", "name": "acme-daily", "tag": "campaign:spring"}
# The ids A's jobs are asked for by (filled in by `seed`), and A's endpoint's.
RESOURCE_PARAMS = ("{id}", "{name}")


def body_for(route: Route, workspace: str) -> tuple[object, bool]:
    """A valid body for `route`, acting for `workspace`; and whether it names it."""
    email = {"to": "b@example.com", "subject": "s", "html": "h", "workspaceId": workspace,
             "delay": HOUR_MS}  # fmt: skip
    sms = {"phoneNumber": "+14155550100", "message": "m", "workspaceId": workspace,
           "scheduledFor": "2099-01-01T00:00:00Z"}  # fmt: skip
    event = {"workspace": workspace, "data": {"n": 9, "note": "b"}, "delay_ms": HOUR_MS}
    bodies: dict[str, tuple[object, bool]] = {
        "/v1/events/{topic}": (event, True),
        "/v1/jobs/{id}": ({"delay_ms": HOUR_MS}, False),
        "/v1/dead-letters/{function}/replay": ({"workspace": workspace}, True),
        "/v1/dead-letters/{function}/purge": ({"workspace": workspace}, True),
        "/v1/metrics/reset": ({"function": "tasks", "workspace": workspace}, True),
        "/api/metrics/reset": ({"workspaceId": workspace}, True),
        "/v1/limits/{function}": ({"rate_per_s": 10}, False),
        "/v1/limits/{function}/workspace/{workspace}": ({"rate_per_s": 10}, False),
        "/api/schedule-email": (email, True),
        "/api/jobs": (email, True),
        "/api/schedule-sms": (sms, True),
        "/v1/webhooks/endpoints": ({"url": "https://hooks.example.com/b"}, False),
        "/v1/schedules/{function}/{name}": (
            {"workspace": workspace, "data": {"n": 1}, "every_ms": HOUR_MS},
            True,
        ),
    }
    if route.body is None:
        return None, False
    return bodies[route.path]


@dataclass
class Tenants:
    # The ingress's HTTP client and base URL: an app in this process
    # (TestClient's session), or an ingress process (test_battery_acl_roles.py).
    http: aiohttp.ClientSession
    base: str
    keys: Keys
    # A's things: the ids its jobs are asked for by, its endpoint's id, and every
    # string of A's an answer to someone else must not hold.
    job_ids: list[str] = field(default_factory=list)
    endpoint: str = ""
    secrets: set[str] = field(default_factory=set)

    async def call(
        self, method: str, path: str, headers: dict[str, str], body: object = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[int, str]:  # fmt: skip
        async with self.http.request(method, self.base + path, json=body,
                                     headers={**headers, **(extra or {})}) as answer:  # fmt: skip
            return answer.status, await answer.text()


@pytest.fixture
async def tenants(
    redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Tenants]:
    keys = Keys(tmp_path / "keys.json")
    ring = KeyRing.load(keys.path)
    ring.check_every_s = 0  # a revocation seen at the next request, not a second later
    built = services(redis, registry(), ring, RedisHealth(shared_server.url), 2.0)
    server = IngressServer(build_app(built, MAX_BODY), host="127.0.0.1")
    await server.start_server()
    http = TestClient(server)
    await http.start_server()
    yield Tenants(http.session, str(http.make_url("")).rstrip("/"), keys)
    await http.close()


async def seed(t: Tenants) -> None:
    """Tenant A's things, each holding MARK."""
    acme = t.keys.auth("acme")
    t.secrets.add(MARK)
    for given in ("shared-id", "acme-only", None):
        event = {"workspace": "acme", "data": {"n": 1, "note": MARK}, "delay_ms": HOUR_MS,
                 "tags": ["campaign:spring"], **({"id": given} if given else {})}  # fmt: skip
        status, text = await t.call("POST", "/v1/events/tasks", acme, event)
        assert status == 202, text
        if given != "shared-id":
            t.job_ids.append(_json(text)["id"])
    t.secrets.add(t.job_ids[-1])  # the generated id: B never learns it
    schedule = {"workspace": "acme", "data": {"n": 1, "note": MARK}, "every_ms": HOUR_MS}
    status, text = await t.call("PUT", "/v1/schedules/tasks/acme-daily", acme, schedule)
    assert status == 200, text
    endpoint = {"url": f"https://{MARK}.example.com/hook", "description": MARK}
    status, text = await t.call("POST", "/v1/webhooks/endpoints?workspace=acme", acme, endpoint)
    assert status == 201, text
    created = _json(text)
    t.endpoint = created["id"]
    t.secrets |= {created["id"], created["secret"]}
    email = {"to": "a@example.com", "subject": MARK, "html": MARK, "delay": HOUR_MS}
    idem = {"Idempotency-Key": "acme-idem"}
    status, text = await t.call("POST", "/api/schedule-email", acme, email, idem)
    assert status == 202, text


def _json(text: str) -> Any:
    return json.loads(text)


@dataclass
class Matrix:
    """What the battery saw: answers out of their class, and A's strings in answers
    to others."""

    violations: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    routes: set[str] = field(default_factory=set)

    def requests(self) -> int:
        return sum(self.statuses.values())


@dataclass(frozen=True)
class Caller:
    name: str
    headers: dict[str, str]
    # Which workspace the request names where it names one; None: none at all.
    workspace: str | None
    kind: str  # anonymous, other, own, admin


def callers(keys: Keys) -> list[Caller]:
    acme = keys.plain["acme"]
    return [
        Caller("none", {}, "acme", "anonymous"),
        Caller("unknown", {"Authorization": "Bearer sk_" + "x" * 43}, "acme", "anonymous"),
        Caller("truncated", {"Authorization": f"Bearer {acme[:-4]}"}, "acme", "anonymous"),
        Caller("scheme", {"Authorization": f"Basic {acme}"}, "acme", "anonymous"),
        Caller("bare", {"Authorization": acme}, "acme", "anonymous"),
        Caller("revoked", keys.auth("gone"), "acme", "anonymous"),
        # B naming A's workspace, then B in its own scope asking for A's ids.
        Caller("other-naming", keys.auth("other"), "acme", "other"),
        Caller("other-own", keys.auth("other"), None, "other"),
    ]


def owners(keys: Keys) -> list[Caller]:
    return [Caller("own", keys.auth("acme"), "acme", "own"),
            Caller("admin", keys.auth("admin"), "acme", "admin")]  # fmt: skip


def fill(template: str, params: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(params[m[1]], safe=":"), template)


def requests(route: Route, caller: Caller, t: Tenants) -> list[tuple[str, object, bool]]:
    """(path with query, body, whether it names A's workspace) for `route` and `caller`."""
    workspace = caller.workspace or "other"
    names = caller.workspace is not None and (
        "{workspace}" in route.path or "workspace" in route.query
    )
    query: dict[str, str] = {}
    if "workspace" in route.query and caller.workspace is not None:
        query["workspace"] = caller.workspace
    if "function" in route.query:
        query["function"] = "tasks"
    if "state" in route.query:
        query["state"] = "delayed"
    body, body_names = body_for(route, workspace)
    names = names or (body_names and caller.workspace is not None)
    ids = t.job_ids if route.path.startswith("/v1/jobs/") else [t.endpoint]
    found = []
    for one in ids if "{id}" in route.path else [""]:
        path = fill(route.path, {**PARAMS, "workspace": workspace, "id": one})
        if query:
            path += "?" + urllib.parse.urlencode(query)
        found.append((path, body, names))
    return found


def expected(route: Route, caller: Caller, names: bool) -> str:
    """The class an answer must be in: 401, 403, 404, or `allowed` (below 500,
    neither 401 nor 403)."""
    if route.access == "public":
        return "allowed"
    if caller.kind == "anonymous":
        return "401"
    if route.access == "admin":
        return "allowed" if caller.kind == "admin" else "403"
    if caller.kind == "other":
        if names:
            return "403"
        # Another workspace's thing is not found, as one that does not exist (a
        # 403 would confirm it exists); a PUT creates the caller's own.
        if any(p in route.path for p in RESOURCE_PARAMS) and route.method != "PUT":
            return "404"
    return "allowed"


def in_class(status: int, cls: str) -> bool:
    if cls == "allowed":
        return status < 500 and status not in (401, 403)
    return status == int(cls)


async def probe(t: Tenants, matrix: Matrix, who: list[Caller]) -> None:
    # A PUT last: B's creates a schedule of its own under A's name, which B's
    # other requests would then find.
    table = sorted(ROUTES, key=lambda r: r.method == "PUT")
    for caller in who:
        for route in table:
            matrix.routes.add(f"{route.method} {route.path}")
            for path, body, names in requests(route, caller, t):
                status, text = await t.call(route.method, path, caller.headers, body)
                matrix.statuses[status] += 1
                cls = expected(route, caller, names)
                if not in_class(status, cls):
                    matrix.violations.append(
                        f"{caller.name}: {route.method} {path} answered {status}, not {cls}"
                    )
                if caller.kind in ("own", "admin"):
                    continue
                asked = path + repr(body)
                for secret in t.secrets:
                    if secret in text and secret not in asked:
                        matrix.leaks.append(f"{caller.name}: {route.method} {path}: {secret}")


async def same_ids_other_tenant(t: Tenants, matrix: Matrix) -> None:
    """B publishing with A's id and idempotency key gets its own jobs, and A's id
    and key still deduplicate A's own."""
    acme, other = t.keys.auth("acme"), t.keys.auth("other")
    checks: list[tuple[str, bool]] = []
    event = {"workspace": "other", "id": "shared-id", "data": {"n": 2, "note": "b"},
             "delay_ms": HOUR_MS}  # fmt: skip
    status, text = await t.call("POST", "/v1/events/tasks", other, event)
    checks.append(("B's publish with A's id is a new job", status == 202
                   and _json(text) == {"id": "shared-id", "duplicate": False}))  # fmt: skip
    again = {**event, "workspace": "acme", "data": {"n": 3, "note": "again"}}
    status, text = await t.call("POST", "/v1/events/tasks", acme, again)
    checks.append(("A's id still deduplicates A's publish",
                   status == 200 and _json(text)["duplicate"] is True))  # fmt: skip
    status, text = await t.call("GET", "/v1/jobs/shared-id?function=tasks", other)
    checks.append(("B reads its own job by the shared id",
                   status == 200 and _json(text)["data"]["note"] == "b"))  # fmt: skip
    status, text = await t.call("GET", "/v1/jobs/shared-id?function=tasks", acme)
    checks.append(("A's job of the shared id is A's",
                   status == 200 and _json(text)["data"]["note"] == MARK))  # fmt: skip
    email = {"to": "b@example.com", "subject": "b", "html": "b", "delay": HOUR_MS}
    idem = {"Idempotency-Key": "acme-idem"}
    status, text = await t.call("POST", "/api/schedule-email", other, email, idem)
    checks.append(("B's Idempotency-Key of A's is a new job", status == 202))
    status, text = await t.call("POST", "/api/schedule-email", acme, email, idem)
    checks.append(("A's Idempotency-Key still deduplicates A's", status == 200))
    # A stored id of A's ("acme~shared-id") is no id B may give.
    stored = {**event, "id": "acme~shared-id"}
    status, text = await t.call("POST", "/v1/events/tasks", other, stored)
    checks.append(("B cannot give A's stored id", status == 422))
    matrix.violations += [f"ids: {what}" for what, held in checks if not held]


async def a_untouched(t: Tenants, matrix: Matrix) -> None:
    """After B's requests, A's jobs wait as A published them, with A's data, and A's
    schedule and endpoint are there."""
    acme = t.keys.auth("acme")
    for job in t.job_ids:
        status, text = await t.call("GET", f"/v1/jobs/{job}?function=tasks", acme)
        if status != 200 or _json(text)["state"] != "delayed" or MARK not in text:
            matrix.violations.append(f"A's job {job} changed: {status} {text[:200]}")
    status, text = await t.call("GET", "/v1/schedules/tasks/acme-daily", acme)
    if status != 200 or MARK not in text or _json(text)["paused"]:
        matrix.violations.append(f"A's schedule changed: {status} {text[:200]}")
    status, text = await t.call("GET", "/v1/webhooks/endpoints", acme)
    if t.endpoint not in text:
        matrix.violations.append(f"A's endpoint gone: {status} {text[:200]}")


async def run(t: Tenants) -> Matrix:
    matrix = Matrix()
    await seed(t)
    await same_ids_other_tenant(t, matrix)
    # The revoked key worked until revoked.
    status, _ = await t.call("GET", "/v1/jobs?function=tasks&state=delayed", t.keys.auth("gone"))
    assert status == 200
    t.keys.revoke("gone")
    await probe(t, matrix, callers(t.keys))
    await a_untouched(t, matrix)
    # Last: A's and the admin's requests change A's things (cancel, delete, pause).
    await probe(t, matrix, owners(t.keys))
    return matrix


def tally(name: str, matrix: Matrix) -> Tally:
    by_status = {f"s{s}": n for s, n in sorted(matrix.statuses.items())}
    return Tally(name, {"routes": len(matrix.routes), "requests": matrix.requests(),
                        "violations": len(matrix.violations), "leaks": len(matrix.leaks),
                        **by_status})  # fmt: skip


async def test_every_route_keeps_each_tenant_to_its_own(tenants: Tenants, figures: Report) -> None:
    matrix = await run(tenants)
    figures(tally("tenant-matrix", matrix))
    assert matrix.routes == {f"{r.method} {r.path}" for r in ROUTES}
    assert matrix.violations == [], "\n".join(matrix.violations)
    assert matrix.leaks == []


async def test_control_an_open_workspace_check_fails_the_matrix(
    tenants: Tenants, figures: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broken copy of the workspace check: every key may act for every workspace.
    monkeypatch.setattr(ApiKey, "may", lambda self, workspace: True)
    matrix = await run(tenants)
    figures(tally("tenant-matrix-control", matrix))
    assert any(v.startswith("other-naming:") for v in matrix.violations)
    assert matrix.leaks, "B read A's jobs through the open check, and the scan missed it"
