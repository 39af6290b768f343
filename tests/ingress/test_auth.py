"""Who may do what: no key, a wrong key, a workspace key on its own and on another
workspace, and an admin key, for every route of the table."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import msgspec
import pytest

from sluice.runtime.ingress import load_keys
from sluice.runtime.ingress.app import ROUTES
from sluice.runtime.ingress.auth import KeyRing, new_key
from sluice.runtime.ingress.problems import Problem
from sluice.runtime.settings import Settings
from tests.ingress.conftest import Api

# Values for the path parameters of every route, all naming acme's things.
PARAMS = {
    "topic": "tasks",
    "id": "acme-job",
    "function": "tasks",
    "workspace": "acme",
    "name": "daily",
    "tag": "campaign:spring",
}
BODIES: dict[str, object] = {
    "/v1/events/{topic}": {"workspace": "acme", "data": {"n": 1}},
    "/v1/jobs/{id}": {"delay_ms": 60_000},
    "/v1/dead-letters/{function}/replay": {},
    "/api/metrics/reset": {},
    "/v1/metrics/reset": {},
    "/v1/limits/{function}": {"rate_per_s": 10},
    "/v1/limits/{function}/workspace/{workspace}": {"rate_per_s": 10},
    "/api/schedule-email": {},
    "/api/schedule-sms": {},
    "/api/jobs": {},
    "/v1/webhooks/endpoints": {"url": "https://hooks.example.com/sluice"},
    "/v1/schedules/{function}/{name}": {"data": {"n": 1}, "every_ms": 60_000},
}
KEYED = [r for r in ROUTES if r.access != "public"]


def path_of(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS[m[1]], template)


async def call(api: Api, method: str, path: str, headers: dict[str, str], body: object) -> int:
    answer = await api.http.request(method, path, headers=headers, json=body)
    return answer.status


@pytest.fixture
async def jobs(api: Api) -> Api:
    for workspace in ("acme", "other"):
        event = {"workspace": workspace, "data": {"n": 1}, "id": f"{workspace}-job",
                 "delay_ms": 3_600_000}  # fmt: skip
        answer = await api.post("/v1/events/tasks", event, who=workspace)
        assert answer.status == 202
    return api


@pytest.mark.parametrize("route", KEYED, ids=lambda r: f"{r.method} {r.path}")
async def test_every_keyed_route_refuses_no_key_and_a_wrong_key(jobs: Api, route: object) -> None:
    method, template = route.method, route.path  # type: ignore[attr-defined]
    body = BODIES.get(template)
    assert await call(jobs, method, path_of(template), {}, body) == 401
    wrong = {"Authorization": "Bearer sk_not-a-key"}
    assert await call(jobs, method, path_of(template), wrong, body) == 401
    admin = await call(jobs, method, path_of(template), jobs.auth("admin"), body)
    assert admin not in (401, 403, 500)
    workspace = await call(jobs, method, path_of(template), jobs.auth("acme"), body)
    if route.access == "admin":  # type: ignore[attr-defined]
        assert workspace == 403
    else:
        assert workspace not in (401, 403, 500)


async def test_a_workspace_key_never_reaches_another_workspace(jobs: Api) -> None:
    acme = jobs.auth("acme")
    # Another workspace's job is not found, as a job that does not exist.
    moves: list[tuple[str, object]] = [("GET", None), ("DELETE", None), ("PATCH", {"delay_ms": 1})]
    for method, move in moves:
        assert await call(jobs, method, "/v1/jobs/other-job", acme, move) == 404
        # Nor by its stored id (as its handler sees it).
        assert await call(jobs, method, "/v1/jobs/other~other-job", acme, move) == 404
    assert await call(jobs, "GET", "/v1/jobs/acme~acme-job", acme, None) == 200
    assert await call(jobs, "GET", "/v1/jobs/other-job", jobs.auth("other"), None) == 200
    admin = jobs.auth("admin")
    assert await call(jobs, "GET", "/v1/jobs/other-job?workspace=other", admin, None) == 200
    # Naming another workspace is refused.
    refused: list[tuple[str, str, object]] = [
        ("POST", "/v1/events/tasks", {"workspace": "other", "data": {"n": 2}}),
        ("GET", "/v1/jobs?function=tasks&state=delayed&workspace=other", None),
        ("GET", "/v1/jobs/other-job?workspace=other", None),
        ("GET", "/v1/metrics/workspace/other", None),
        ("GET", "/api/metrics/workspace/other", None),
        ("GET", "/v1/dead-letters/tasks?workspace=other", None),
        ("POST", "/v1/dead-letters/tasks/replay", {"workspace": "other"}),
    ]
    for method, path, body in refused:
        assert await call(jobs, method, path, acme, body) == 403, path
    # Its own jobs it lists and cancels.
    listing = await jobs.http.get("/v1/jobs?function=tasks&state=delayed", headers=acme)
    assert [j["id"] for j in (await listing.json())["jobs"]] == ["acme-job"]
    cancel = await jobs.http.delete("/v1/jobs/acme-job", headers=acme)
    assert (await cancel.json())["state"] == "cancelled"


def test_the_keyring_remembers_known_keys_only_and_within_its_bound() -> None:
    acme, stored = new_key("acme", ("acme",), admin=False)
    ring = KeyRing([stored])
    header = f"Bearer {acme}"
    assert ring.identify(header) is ring.identify(header) is ring.by_hash[stored.hash]
    assert list(ring.seen) == [header]
    for wrong in (f"Bearer {new_key('x', (), admin=True)[0]}", "Bearer nope", None):
        with pytest.raises(Problem) as refused:
            ring.identify(wrong)
        assert refused.value.status == 401
    assert list(ring.seen) == [header]
    # Full, it starts again rather than grow: a key is hashed again, still known.
    ring.seen.update({f"Bearer filler-{i}": stored for i in range(KeyRing.SEEN_MAX - 1)})
    ring.identify(f"bearer {acme}")
    assert list(ring.seen) == [f"bearer {acme}"]


def test_keys_reload_when_the_keys_file_changes_and_a_bad_file_keeps_the_old(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (admin, admin_key), (acme, acme_key) = new_key("a", (), True), new_key("b", ("acme",), False)
    path = tmp_path / "keys.json"
    path.write_bytes(msgspec.json.encode([admin_key, acme_key]))
    ring = load_keys(Settings(api_keys_file=str(path)))
    # At most once a second in service; every request here, so the test need not wait.
    ring.check_every_s = 0
    assert ring.identify(f"Bearer {acme}").name == "b"  # and remembered
    path.write_bytes(msgspec.json.encode([admin_key]))  # acme's key revoked
    with pytest.raises(Problem) as revoked:
        ring.identify(f"Bearer {acme}")
    assert revoked.value.status == 401
    path.write_bytes(b"[{not json")
    with caplog.at_level(logging.ERROR):
        assert ring.identify(f"Bearer {admin}").admin
        assert ring.identify(f"Bearer {admin}").admin
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert str(path) in error.getMessage()
    assert "keeping the 1 key" in error.getMessage()
    path.unlink()
    assert ring.identify(f"Bearer {admin}").admin
    path.write_bytes(msgspec.json.encode([acme_key]))
    assert ring.identify(f"Bearer {acme}").name == "b"
    with pytest.raises(Problem):
        ring.identify(f"Bearer {admin}")
