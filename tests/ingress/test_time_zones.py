"""`run_at` in a named zone over HTTP: RFC 9557 suffixes and local times on Berlin's
2026 DST days, the receipt's `due`, the reschedule and seed routes, and the 422s."""

from __future__ import annotations

import pytest

from sluice.runtime import Jobs
from sluice.streams.connection import Redis
from tests.ingress.conftest import Api, registry
from tests.ingress.test_input import problem_of


def event(run_at: object, **more: object) -> dict[str, object]:
    return {"workspace": "acme", "data": {"n": 1}, "run_at": run_at, **more}


@pytest.mark.parametrize(
    ("run_at", "due"),
    [
        ("2026-12-24T09:00:00[Europe/Berlin]", "2026-12-24T08:00:00.000Z"),
        ({"local": "2026-12-24T09:00", "zone": "Europe/Berlin"}, "2026-12-24T08:00:00.000Z"),
        # Spring forward (29 March): 02:30 is skipped, so it is moved on by the gap.
        ("2026-03-29T02:30:00[Europe/Berlin]", "2026-03-29T01:30:00.000Z"),
        ({"local": "2026-03-29T02:30", "zone": "Europe/Berlin"}, "2026-03-29T01:30:00.000Z"),
        # Fall back (25 October): 02:30 is doubled; the earlier, or the offset's choice.
        ({"local": "2026-10-25T02:30", "zone": "Europe/Berlin"}, "2026-10-25T00:30:00.000Z"),
        ("2026-10-25T02:30:00+01:00[Europe/Berlin]", "2026-10-25T01:30:00.000Z"),
        ("2026-10-25T02:30:00Z", "2026-10-25T02:30:00.000Z"),
    ],
)
async def test_a_zoned_run_at_is_accepted_and_the_receipt_says_when(
    api: Api, run_at: object, due: str
) -> None:
    answer = await api.post("/v1/events/tasks", event(run_at))
    assert answer.status == 202, await answer.text()
    assert (await answer.json())["due"] == due
    now = {"workspace": "acme", "data": {"n": 2}}
    many = await api.post("/v1/events/tasks", [event(run_at), now])
    assert many.status == 202, await many.text()
    assert [job.get("due") for job in (await many.json())["jobs"]] == [due, None]


async def test_a_receipt_without_run_at_is_as_before(api: Api) -> None:
    answer = await api.post("/v1/events/tasks", {"workspace": "acme", "data": {"n": 1}})
    assert set(await answer.json()) == {"id", "duplicate"}


async def test_reschedule_and_the_seed_sms_route_take_a_zone(api: Api, redis: Redis) -> None:
    published = await api.post("/v1/events/tasks", event(None, id="tz-1", delay_ms=60_000))
    assert published.status == 202, await published.text()
    when = {"run_at": {"local": "2027-10-31T02:30", "zone": "Europe/Berlin"}}
    moved = await api.http.patch("/v1/jobs/tz-1", json=when, headers=api.auth("acme"))
    assert moved.status == 200, await moved.text()
    record = await Jobs(redis, registry()).get("tasks", "tz-1", workspace="acme")
    assert record is not None
    assert record.due_ms == 1_824_942_600_000  # 2027-10-31T00:30:00Z, the earlier 02:30
    sms = await api.post(
        "/api/schedule-sms",
        {"phoneNumber": "+15550100", "message": "hi", "workspaceId": "acme",
         "scheduledFor": "2027-03-28T02:30:00[Europe/Berlin]"},
    )  # fmt: skip
    assert sms.status == 202, await sms.text()


@pytest.mark.parametrize(
    ("run_at", "path", "says"),
    [
        ("2026-12-24T09:00:00[Mars/Olympus]", "$.run_at", "unknown time zone 'Mars/Olympus'"),
        ("2026-10-25T02:30:00+03:00[Europe/Berlin]", "$.run_at", "the offset is not"),
        ({"local": "2026-12-24T09:00", "zone": "Nowhere"}, "$.run_at.zone", "unknown time zone"),
        ({"local": "christmas", "zone": "Europe/Berlin"}, "$.run_at.local", "not an RFC 3339"),
        ({"local": "2026-12-24T09:00"}, "$.run_at.zone", "zone"),
        ({"local": "2026-12-24T09:00", "zone": "UTC", "x": 1}, "$.run_at", "x"),
        ("2026-12-24T09:00:00", "$.run_at", "has no time zone"),
    ],
)
async def test_a_bad_zone_or_time_is_a_422_naming_the_field(
    api: Api, run_at: object, path: str, says: str
) -> None:
    answer = await api.post("/v1/events/tasks", event(run_at))
    assert answer.status == 422, await answer.text()
    (error,) = (await problem_of(answer))["errors"]
    assert error["path"] == path
    assert says in error["message"]
    moved = await api.http.patch("/v1/jobs/nope", json={"run_at": run_at}, headers=api.auth("acme"))
    assert moved.status in (404, 422)


async def test_the_openapi_document_describes_the_accepted_forms(api: Api) -> None:
    spec = await (await api.http.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    (event_schema,) = [s for n, s in schemas.items() if n.startswith("EventBody") and "Sms" in n]
    run_at = event_schema["properties"]["run_at"]
    assert "[Europe/Berlin]" in str(run_at)
    assert set(schemas["LocalTime"]["properties"]) == {"local", "zone"}
