"""GET /v1/jobs without a function: every function's jobs newest first, in the
key's workspace; and what a job's status shows of its input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluice.runtime import Client, Jobs
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.ingress.conftest import Api
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE, total_counts, wait_until, worker_in_process


async def test_every_functions_jobs_are_listed_newest_first_with_their_input(api: Api) -> None:
    published: list[tuple[str, str]] = []
    for i, (function, workspace) in enumerate(
        [("tasks", "acme"), ("batch-tasks", "other"), ("batch-tasks", "acme"),
         ("window-tasks", "acme"), ("tasks", "other"), ("tasks", "acme")]
    ):  # fmt: skip
        event = {"workspace": workspace, "data": {"n": i}, "delay_ms": 60_000 + 1_000 * i}
        answer = await api.post(f"/v1/events/{function}", event, who=workspace)
        assert answer.status == 202
        published.append(((await answer.json())["id"], workspace))
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await api.http.get(
            "/v1/jobs", params={"state": "delayed", "limit": "2", "cursor": cursor},
            headers=api.auth("acme"),
        )  # fmt: skip
        assert page.status == 200, await page.text()
        body = await page.json()
        seen += body["jobs"]
        if not (cursor := body["cursor"]):
            break
    acme = [(job_id, i) for i, (job_id, ws) in enumerate(published) if ws == "acme"]
    # acme's key sees acme's jobs only, latest due first, each with its input (as
    # its function's input type holds it: with the defaults).
    assert [(job["id"], job["data"]["n"]) for job in seen] == acme[::-1]
    assert {job["function"] for job in seen} == {"tasks", "batch-tasks", "window-tasks"}
    everyone = await api.http.get(
        "/v1/jobs", params={"state": "delayed", "limit": "100"}, headers=api.auth("admin")
    )
    assert [job["id"] for job in (await everyone.json())["jobs"]] == [
        job_id for job_id, _ in published[::-1]
    ]
    theirs = await api.http.get(
        "/v1/jobs", params={"state": "delayed", "workspace": "other"}, headers=api.auth("acme")
    )
    assert theirs.status == 403
    one = await api.http.get(f"/v1/jobs/{acme[0][0]}", headers=api.auth("acme"))
    assert (await one.json())["data"]["n"] == 0


async def test_a_dead_job_shows_its_input_and_a_completed_one_none(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    client = Client(redis, load(SAMPLE))
    reject = {"n": 3, "mode": "reject"}
    async with worker_in_process(shared_server.url, "doomed-tasks"):
        doomed = await client.publish("doomed-tasks", workspace="acme", data=reject)

        async def dead() -> bool:
            return (await total_counts(redis, "doomed-tasks")).dead == 1

        await wait_until(dead, what="a dead letter")
    answer = await api.http.get(f"/v1/jobs/{doomed.id}", headers=api.auth("acme"))
    shown = await answer.json()
    assert (shown["state"], shown["data"]["n"], shown["data"]["mode"]) == ("dead", 3, "reject")
    listed = await api.http.get("/v1/jobs?state=dead", headers=api.auth("acme"))
    assert [(j["id"], j["data"]) for j in (await listed.json())["jobs"]] == [
        (doomed.id, shown["data"])
    ]
    # A completed job's record keeps its result, not its input.
    async with worker_in_process(shared_server.url, "tasks"):
        done = await client.publish("tasks", workspace="acme", data={"n": 1})

        async def completed() -> bool:
            record = await Jobs(redis, load(SAMPLE)).get("tasks", done.id)
            return record is not None and record.state == "completed"

        await wait_until(completed, what="the job completed")
    answer = await api.http.get(f"/v1/jobs/{done.id}", headers=api.auth("acme"))
    assert (await answer.json())["data"] is None
