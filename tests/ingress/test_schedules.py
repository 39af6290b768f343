"""Schedules over HTTP: create or replace by name, the next runs across Berlin's
DST changes, list, pause and resume, delete, the workspace a key may act for,
and bad input answered with the field it is about."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.runtime import Jobs
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.ingress.conftest import Api
from tests.runtime.helpers import SAMPLE

DAILY = "/v1/schedules/tasks/daily"


async def put(api: Api, path: str, body: dict[str, Any], who: str = "acme") -> Any:
    answer = await api.http.put(path, json=body, headers=api.auth(who))
    assert answer.status == 200, await answer.text()
    return await answer.json()


async def test_a_schedule_shows_its_next_runs_across_both_dst_changes(api: Api) -> None:
    shown = await put(api, DAILY, {"data": {"n": 1}, "cron": "30 2 * * *",
                                   "zone": "Europe/Berlin",
                                   "start": {"local": "2027-03-27T00:00", "zone": "Europe/Berlin"},
                                   "end": "2027-04-02T12:00:00[Europe/Berlin]"})  # fmt: skip
    # 02:30 is skipped on 28 March: it runs at the jump, 03:00 CEST.
    assert [run["at"] for run in shown["next_runs"][:3]] == [
        "2027-03-27T02:30:00+01:00",
        "2027-03-28T03:00:00+02:00",
        "2027-03-29T02:30:00+02:00",
    ]
    # The data as the function's input, with its defaults.
    assert (shown["workspace"], shown["data"]["n"], shown["paused"]) == ("acme", 1, False)
    autumn = await put(api, "/v1/schedules/tasks/autumn",
                       {"data": {"n": 2}, "cron": "30 2 * * *", "zone": "Europe/Berlin",
                        "start": "2027-10-30T00:00:00+02:00[Europe/Berlin]"})  # fmt: skip
    # 02:30 occurs twice on 31 October: it runs once, the first time.
    assert [run["at"] for run in autumn["next_runs"][:3]] == [
        "2027-10-30T02:30:00+02:00",
        "2027-10-31T02:30:00+02:00",
        "2027-11-01T02:30:00+01:00",
    ]
    # GET shows as many as asked; past the end, none.
    answer = await api.http.get(f"{DAILY}?runs=100", headers=api.auth("acme"))
    runs = (await answer.json())["next_runs"]
    assert [run["at"][:10] for run in runs] == [f"2027-03-{d}" for d in range(27, 32)] + [
        "2027-04-01",
        "2027-04-02",
    ]


async def test_replace_list_pause_resume_and_delete(api: Api, redis: Redis) -> None:
    await put(api, DAILY, {"data": {"n": 1}, "every_ms": 60_000, "limit": 3})
    replaced = await put(api, DAILY, {"data": {"n": 2}, "every_ms": 3_600_000})
    assert (replaced["every_ms"], replaced["limit"], replaced["data"]["n"]) == (3_600_000, 0, 2)
    await put(api, DAILY, {"data": {"n": 3}, "cron": "0 6 * * *"}, who="other")
    listed = await (await api.http.get("/v1/schedules", headers=api.auth("acme"))).json()
    assert [(s["name"], s["workspace"]) for s in listed["schedules"]] == [("daily", "acme")]
    assert len(listed["schedules"][0]["next_runs"]) == 1
    everyone = await (await api.http.get("/v1/schedules", headers=api.auth("admin"))).json()
    assert sorted(s["workspace"] for s in everyone["schedules"]) == ["acme", "other"]

    paused = await api.http.post(f"{DAILY}/pause", headers=api.auth("acme"))
    assert paused.status == 200
    assert (await paused.json())["paused"] is True
    resumed = await api.http.post(f"{DAILY}/resume", headers=api.auth("acme"))
    assert (await resumed.json())["paused"] is False

    assert (await api.http.delete(DAILY, headers=api.auth("acme"))).status == 204
    gone = await api.http.get(DAILY, headers=api.auth("acme"))
    assert gone.status == 404
    assert (await api.http.delete(DAILY, headers=api.auth("acme"))).status == 404
    # The other workspace's schedule of the same name is its own.
    theirs = await api.http.get(DAILY, headers=api.auth("other"))
    assert (await theirs.json())["cron"] == "0 6 * * *"
    # No scheduler ran: the jobs are the first two ticks the API published at each
    # PUT and resume, acme's all cancelled; other's two wait.
    jobs = await Jobs(redis, load(SAMPLE)).counts("tasks")
    assert (jobs.published, jobs.cancelled, jobs.delayed) == (8, 6, 2)


async def test_a_key_acts_only_for_its_workspaces(api: Api) -> None:
    body = {"data": {"n": 1}, "every_ms": 60_000, "workspace": "other"}
    denied = await api.http.put(DAILY, json=body, headers=api.auth("acme"))
    assert denied.status == 403
    await put(api, DAILY, {"data": {"n": 1}, "every_ms": 60_000}, who="other")
    for answer in (
        await api.http.get(f"{DAILY}?workspace=other", headers=api.auth("acme")),
        await api.http.delete(f"{DAILY}?workspace=other", headers=api.auth("acme")),
        await api.http.post(f"{DAILY}/pause?workspace=other", headers=api.auth("acme")),
    ):
        assert answer.status == 403
    # An admin key names the workspace.
    unnamed = await api.http.get(DAILY, headers=api.auth("admin"))
    assert unnamed.status == 422
    named = await api.http.get(f"{DAILY}?workspace=other", headers=api.auth("admin"))
    assert named.status == 200


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"data": {"n": 1}, "cron": "0 3 * *"}, "$.cron"),
        ({"data": {"n": 1}, "cron": "0 3 * * *", "zone": "Nowhere/Land"}, "$.zone"),
        ({"data": {"n": 1}, "every_ms": 10}, "$.every_ms"),
        ({"data": {"n": 1}, "every_ms": 60_000, "limit": 0}, "$.limit"),
        ({"data": {"n": 1}, "every_ms": 60_000, "start": "soon"}, "$.start"),
        ({"data": {"n": 1}, "cron": "0 3 * * *", "start": "9999-12-31T00:00:00Z"}, "$.start"),
        ({"data": {"n": 1}, "every_ms": 60_000, "end": {"local": "2027-01-01T00:00",
                                                        "zone": "Mars/Base"}}, "$.end.zone"),
        ({"data": {"n": 1}, "every_ms": 60_000, "start": "2027-01-02T00:00:00Z",
          "end": "2027-01-01T00:00:00Z"}, "$.end"),
        ({"data": {"n": "one"}, "every_ms": 60_000}, "$"),
        ({"data": {"n": 1}}, "$"),
        ({"data": {"n": 1}, "every_ms": 60_000, "when": "now"}, "$"),
    ],
)  # fmt: skip
async def test_bad_schedules_get_a_422_naming_the_field(
    api: Api, body: dict[str, Any], path: str
) -> None:
    answer = await api.http.put(DAILY, json=body, headers=api.auth("acme"))
    assert answer.status == 422, await answer.text()
    problem = await answer.json()
    assert problem["errors"][0]["path"] == path or path == "$", problem
    listed = await (await api.http.get("/v1/schedules", headers=api.auth("acme"))).json()
    assert listed["schedules"] == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/v1/schedules/nothing/daily", 404),
        ("GET", "/v1/schedules/nothing/daily", 404),
        ("GET", "/v1/schedules?function=nothing", 404),
        ("GET", "/v1/schedules?runs=101", 422),
        ("GET", "/v1/schedules/tasks/a%20b", 422),
        ("POST", "/v1/schedules/tasks/none/resume", 404),
    ],
)
async def test_unknown_things_and_bad_queries_get_a_4xx(
    api: Api, method: str, path: str, status: int
) -> None:
    body = {"data": {"n": 1}, "every_ms": 60_000} if method == "PUT" else None
    answer = await api.http.request(method, path, json=body, headers=api.auth("acme"))
    assert answer.status == status, await answer.text()
