"""Phone numbers of sms.send, whatsapp.send and /api/schedule-sms: national ones
read in SLUICE_SMS_DEFAULT_REGION and stored in E.164; an impossible one a 422
naming the field and why."""

from __future__ import annotations

import contextvars
from typing import Any

import msgspec
import pytest

from functions.sms import Sms
from functions.whatsapp import WhatsApp
from sluice.runtime import ConfigurationError, Jobs, Settings, SmsSettings, e164
from sluice.runtime.phones import in_workspace
from sluice.runtime.settings import from_env, use_settings
from sluice.streams.connection import Redis
from tests.ingress.conftest import registry, start_api
from tests.redis_server import RedisServer

US = Settings(sms=SmsSettings(default_region="US"))


def in_region(settings: Settings | None, call: Any, *args: Any) -> Any:
    """`call(*args)` where current_settings() is `settings` (None: unset)."""

    def run() -> Any:
        if settings is not None:
            use_settings(settings)
        return call(*args)

    return contextvars.copy_context().run(run)


def test_numbers_are_normalised_in_the_default_region_or_refused_with_the_reason() -> None:
    assert in_region(US, e164, "(555) 010-0199", "to") == "+15550100199"
    assert in_region(US, e164, "5550100", "to") == "+15550100"
    assert in_region(US, e164, "+49 30 1234567", "to") == "+49301234567"
    assert in_region(None, e164, "+1 555 0100", "to") == "+15550100"
    for settings, number, reason in [
        (None, "5550100", "a national number, and no default region"),
        (US, "12", "too short"),
        (US, "hello", "not a phone number"),
        (US, "+1 555 0100 9999 99", "too long"),
    ]:
        with pytest.raises(ValueError, match=f"`to` .* is not a phone number: {reason}"):
            in_region(settings, e164, number, "to")
    assert in_region(US, lambda: Sms(to="555 0100", body="hi").to) == "+15550100"
    assert in_region(US, lambda: WhatsApp(to="5550100", text="hi").to) == "+15550100"
    with pytest.raises(ConfigurationError, match="SLUICE_SMS_DEFAULT_REGION='XX'"):
        SmsSettings(default_region="XX")


async def test_the_ingress_normalises_in_its_region_and_names_the_field_it_refuses(
    redis: Redis, shared_server: RedisServer
) -> None:
    use_settings(US)  # this test's task: the server started below serves in it
    api = await start_api(redis, shared_server.url)
    try:
        sent = await api.post("/v1/events/sms.send", {"workspace": "acme",
                              "data": {"to": "555-0100", "body": "hi"}})  # fmt: skip
        assert sent.status == 202, await sent.text()
        seed = await api.post("/api/schedule-sms", {"phoneNumber": "5550123", "message": "hi",
                              "workspaceId": "acme"})  # fmt: skip
        assert seed.status == 202, await seed.text()
        jobs = Jobs(redis, registry())
        for answer in (sent, seed):
            job_id = (await answer.json())["id" if answer is sent else "jobId"]
            record = await jobs.get("sms.send", job_id)
            assert record is not None
            assert record.data["to"] in ("+15550100", "+15550123")
        bad = await api.post("/v1/events/sms.send", {"workspace": "acme",
                             "data": {"to": "12", "body": "hi"}})  # fmt: skip
        assert bad.status == 422
        problem = await bad.json(content_type=None)
        assert [(e["path"], e["message"]) for e in problem["errors"]] == [
            ("$.data", "`to` '12' is not a phone number: too short")
        ]
        bad = await api.post("/api/schedule-sms", {"phoneNumber": "555", "message": "hi",
                             "workspaceId": "acme"})  # fmt: skip
        assert bad.status == 422
        problem = await bad.json(content_type=None)
        assert [(e["path"], e["message"]) for e in problem["errors"]] == [
            ("$.phoneNumber", "`phoneNumber` '555' is not a phone number: too short")
        ]
    finally:
        await api.http.close()


# acme's customers are in Germany, globex's in the US; everyone else's where the
# deployment is (Great Britain).
REGIONS = Settings(sms=SmsSettings(default_region="GB", regions={"acme": "DE", "globex": "US"}))


def test_a_workspace_may_read_national_numbers_in_its_own_region() -> None:
    def sms_in(workspace: str, to: str) -> str:
        with in_workspace(workspace):
            return Sms(to=to, body="hi").to

    assert in_region(REGIONS, sms_in, "acme", "030 1234567") == "+49301234567"
    assert in_region(REGIONS, sms_in, "globex", "(555) 010-0199") == "+15550100199"
    assert in_region(REGIONS, sms_in, "initech", "020 7946 0958") == "+442079460958"
    with pytest.raises(ConfigurationError, match=r"SLUICE_SMS_REGIONS: 'XX' \(for globex\)"):
        SmsSettings(regions={"globex": "XX"})
    assert from_env({"SLUICE_SMS_REGIONS": "acme=DE, globex=US"}).sms.regions == {
        "acme": "DE",
        "globex": "US",
    }


async def test_the_ingress_reads_each_events_numbers_in_its_workspaces_region(
    redis: Redis, shared_server: RedisServer
) -> None:
    use_settings(REGIONS)
    api = await start_api(redis, shared_server.url)
    try:
        # A workspace key, and an admin key publishing for two workspaces at once.
        one = await api.post("/v1/events/sms.send", {"workspace": "acme",
                             "data": {"to": "030 1234567", "body": "hi"}})  # fmt: skip
        assert one.status == 202, await one.text()
        events = [
            {"workspace": "acme", "data": {"to": "030 1234567", "body": "hi"}},
            {"workspace": "globex", "data": {"to": "(555) 010-0199", "body": "hi"}},
            {"workspace": "initech", "data": {"to": "020 7946 0958", "body": "hi"}},
        ]
        many = await api.post("/v1/events/sms.send", events, who="admin")
        assert many.status == 202, await many.text()
        lines = "\n".join(msgspec.json.encode(e).decode() for e in events)
        streamed = await api.http.post(
            "/v1/events/sms.send",
            data=lines,
            headers={**api.auth("admin"), "Content-Type": "application/x-ndjson"},
        )
        assert streamed.status == 202, await streamed.text()
        seed = await api.post("/api/schedule-sms", {"phoneNumber": "(555) 010-0199",
                              "message": "hi", "workspaceId": "globex"}, who="admin")  # fmt: skip
        assert seed.status == 202, await seed.text()
        jobs = Jobs(redis, registry())
        sent = [((await one.json())["id"], "acme")]
        for answer in (many, streamed):
            ids = [job["id"] for job in (await answer.json())["jobs"]]
            sent += zip(ids, ("acme", "globex", "initech"), strict=True)
        found = []
        for job_id, workspace in sent:
            record = await jobs.get("sms.send", job_id, workspace=workspace)
            assert record is not None, job_id
            found.append(record.data["to"])
        assert found == ["+49301234567", *(["+49301234567", "+15550100199", "+442079460958"] * 2)]
        record = await jobs.get("sms.send", (await seed.json())["jobId"], workspace="globex")
        assert record is not None
        assert record.data["to"] == "+15550100199"
        # Decoded event by event, bad input is still named where it is.
        bad = await api.post("/v1/events/sms.send", [events[0], {**events[1], "data": {
                             "to": "12", "body": "hi"}}], who="admin")  # fmt: skip
        assert bad.status == 422
        problem = await bad.json(content_type=None)
        assert [e["path"] for e in problem["errors"]] == ["$[1].data"]
        for body, status in ((b"[1,", 400), (b"[7]", 422), (b'{"workspace": 7}', 422)):
            answer = await api.http.post(
                "/v1/events/sms.send",
                data=body,
                headers={**api.auth("admin"), "Content-Type": "application/json"},
            )
            assert answer.status == status, (body, await answer.text())
    finally:
        await api.http.close()
