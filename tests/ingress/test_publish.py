"""Publishing over HTTP, end to end: one event, an array, NDJSON, delayed, duplicate,
the seed routes; and every way a body can be wrong, answered as problem details."""

from __future__ import annotations

import json
from pathlib import Path

from sluice.runtime import DeadLetters, Jobs
from sluice.streams.connection import Redis
from tests.ingress.conftest import MAX_BODY, Api, registry
from tests.redis_server import RedisServer
from tests.runtime.helpers import read_ledger, wait_until, worker_in_process

PROBLEM = "application/problem+json"


async def test_an_event_published_over_http_reaches_its_handler(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    async with worker_in_process(shared_server.url, "tasks"):
        answer = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}})
        assert answer.status == 202
        body = await answer.json()
        assert body["duplicate"] is False

        async def handled() -> bool:
            return read_ledger(ledger)[body["id"]] == 1

        await wait_until(handled, what="the job handled")


async def test_a_batch_and_ndjson_each_write_every_event(api: Api, redis: Redis) -> None:
    events = [{"workspace": "acme", "data": {"n": i}} for i in range(100)]
    answer = await api.post("/v1/events/tasks", events)
    assert answer.status == 202
    ids = [job["id"] for job in (await answer.json())["jobs"]]
    assert len(set(ids)) == 100
    lines = "\n".join(json.dumps(e) for e in events[:10]) + "\n"
    answer = await api.http.post(
        "/v1/events/tasks",
        data=lines,
        headers={**api.auth("acme"), "Content-Type": "application/x-ndjson"},
    )
    assert answer.status == 202
    assert len((await answer.json())["jobs"]) == 10
    counts = await Jobs(redis, registry()).counts("tasks")
    assert counts.waiting == 110


async def test_delayed_and_duplicate_publishes(api: Api, redis: Redis) -> None:
    event = {"workspace": "acme", "data": {"n": 1}, "id": "order-1", "delay_ms": 60_000}
    first = await api.post("/v1/events/tasks", event)
    assert first.status == 202
    again = await api.post("/v1/events/tasks", event)
    assert again.status == 200
    assert await again.json() == {"id": "order-1", "duplicate": True}
    record = await Jobs(redis, registry()).get("tasks", "order-1", workspace="acme")
    assert record is not None
    assert record.state == "delayed"
    # The Idempotency-Key header names the job when the body does not.
    headers = {**api.auth("acme"), "Idempotency-Key": "req-7"}
    body = {"workspace": "acme", "data": {"n": 2}}
    for status in (202, 200):
        answer = await api.http.post("/v1/events/tasks", json=body, headers=headers)
        assert answer.status == status
        assert (await answer.json())["id"] == "req-7"


async def test_an_id_or_idempotency_key_is_per_workspace(api: Api, redis: Redis) -> None:
    # acme and other each give the same id, in the body and in the header: neither
    # learns of the other's job nor makes it vanish; each sees its own by that id.
    for who in ("acme", "other"):
        event = {"workspace": who, "data": {"n": 1}, "id": "order-9", "delay_ms": 60_000}
        answer = await api.post("/v1/events/tasks", event, who=who)
        assert (answer.status, await answer.json()) == (202, {"id": "order-9", "duplicate": False})
        headers = {**api.auth(who), "Idempotency-Key": "req-9"}
        body = {"workspace": who, "data": {"n": 2}, "delay_ms": 60_000}
        answer = await api.http.post("/v1/events/tasks", json=body, headers=headers)
        assert (answer.status, await answer.json()) == (202, {"id": "req-9", "duplicate": False})
    repeat = {"workspace": "acme", "data": {"n": 3}, "id": "order-9"}
    again = await api.post("/v1/events/tasks", repeat)
    assert (again.status, await again.json()) == (200, {"id": "order-9", "duplicate": True})
    assert (await Jobs(redis, registry()).counts("tasks")).delayed == 4
    for who in ("acme", "other"):
        for job_id in ("order-9", "req-9"):
            answer = await api.http.get(f"/v1/jobs/{job_id}", headers=api.auth(who))
            found = await answer.json()
            assert (answer.status, found["id"], found["workspace"]) == (200, job_id, who)
    cancelled = await api.http.delete("/v1/jobs/order-9", headers=api.auth("acme"))
    assert (await cancelled.json())["state"] == "cancelled"
    theirs = await api.http.get("/v1/jobs/order-9", headers=api.auth("other"))
    assert (await theirs.json())["state"] == "delayed"
    # An admin names the workspace of an id its publisher gave.
    admin = await api.http.get("/v1/jobs/order-9?workspace=other", headers=api.auth("admin"))
    assert ((await admin.json())["workspace"], (await admin.json())["state"]) == (
        "other", "delayed",
    )  # fmt: skip
    unnamed = await api.http.get("/v1/jobs/order-9", headers=api.auth("admin"))
    assert unnamed.status == 404
    assert "?workspace=" in (await unnamed.json())["detail"]


async def test_dead_letters_of_one_id_are_each_workspaces_own(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    dead = DeadLetters(redis, registry())
    async with worker_in_process(shared_server.url, "tasks"):
        for who in ("acme", "other"):
            event = {"workspace": who, "data": {"n": 1, "mode": "reject"}, "id": "order-7"}
            assert (await api.post("/v1/events/tasks", event, who=who)).status == 202

        async def both_dead() -> bool:
            return len(await dead.read("tasks")) == 2

        await wait_until(both_dead, what="two dead letters")
    # A handler (and so a letter's envelope) has the id unique across workspaces.
    (letter,) = await dead.read("tasks", workspace="acme")
    assert letter.envelope.id == "acme~order-7"
    for who in ("acme", "other"):
        answer = await api.http.get("/v1/dead-letters/tasks", headers=api.auth(who))
        ((view,),) = [(await answer.json())["letters"]]
        assert (view["id"], view["workspace"]) == ("order-7", who)
    replayed = await api.post("/v1/dead-letters/tasks/replay", {"ids": ["order-7"]})
    assert await replayed.json() == {"replayed": 1}
    (left,) = await dead.read("tasks")
    assert left.envelope.workspace == "other"
    record = await Jobs(redis, registry()).get("tasks", "order-7", workspace="acme")
    assert record is not None
    assert record.state == "queued"


async def test_the_bullmq_routes_publish_to_email_and_sms(api: Api, redis: Redis) -> None:
    answer = await api.post(
        "/api/schedule-email",
        {
            "to": "ada@example.com",
            "subject": "Hi",
            "html": "<p>Hi</p>",
            "contactId": "c-1",
            "workspaceId": "acme",
            "delay": 60_000,
        },
    )
    assert answer.status == 202
    reply = await answer.json()
    assert reply["success"] is True
    record = await Jobs(redis, registry()).get("email.send", reply["jobId"])
    assert record is not None
    assert record.state == "delayed"
    answer = await api.post(
        "/api/schedule-sms",
        {
            "phoneNumber": "+15550100",
            "message": "See you at 10",
            "workspaceId": "acme",
            "scheduledFor": "2030-01-01T09:00:00Z",
            "metadata": {"booking": 7},
        },
    )
    assert answer.status == 202
    bad = await api.post(
        "/api/schedule-sms",
        {"phoneNumber": "12", "message": "x", "workspaceId": "acme"},
    )
    assert bad.status == 422


async def test_bad_input_is_a_problem_with_its_field_path(api: Api, redis: Redis) -> None:
    async def problem(answer_status: int, path: str | None, **kw: object) -> None:
        kw.setdefault("headers", api.auth("acme"))
        answer = await api.http.post("/v1/events/tasks", **kw)  # type: ignore[arg-type]
        assert answer.status == answer_status, await answer.text()
        assert answer.content_type == PROBLEM
        body = await answer.json()
        assert body["status"] == answer_status
        if path is not None:
            assert body["errors"][0]["path"] == path

    await problem(422, "$.data.n", json={"workspace": "acme", "data": {"n": "one"}})
    await problem(422, "$[1].data", json=[{"workspace": "acme", "data": {"n": 1}},
                                         {"workspace": "acme"}])  # fmt: skip
    await problem(422, "$.workspace", json={"workspace": "a b", "data": {"n": 1}})
    await problem(422, None, json={"workspace": "acme", "data": {"n": 1}, "delay_ms": 5,
                                   "run_at": "2030-01-01T00:00:00Z"})  # fmt: skip
    await problem(422, None, json=[])
    await problem(400, None, data=b"{not json", headers={
        **api.auth("acme"), "Content-Type": "application/json"})  # fmt: skip
    await problem(415, None, data=b"n=1", headers={
        **api.auth("acme"), "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    await problem(413, None, data=b"x" * (MAX_BODY + 1), headers={
        **api.auth("acme"), "Content-Type": "application/json"})  # fmt: skip
    ndjson = b'{"workspace": "acme", "data": {"n": 1}}\n{"workspace": "acme", "data": {}}\n'
    await problem(422, "$[1].data.n", data=ndjson, headers={
        **api.auth("acme"), "Content-Type": "application/x-ndjson"})  # fmt: skip
    unknown = await api.post("/v1/events/nobody", {"workspace": "acme", "data": {}})
    assert unknown.status == 404
    # A path no route serves, and a method the path does not take: problems too.
    nowhere = await api.post("/v1/nowhere", {})
    assert (nowhere.status, nowhere.content_type) == (404, PROBLEM)
    wrong = await api.http.get("/v1/events/tasks", headers=api.auth("acme"))
    assert (wrong.status, wrong.content_type, wrong.headers["Allow"]) == (405, PROBLEM, "POST")
    # Nothing of any of them was written.
    assert (await Jobs(redis, registry()).counts("tasks")).published == 0
