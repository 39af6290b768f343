"""Phone numbers of sms.send, whatsapp.send and /api/schedule-sms: national ones
read in SLUICE_SMS_DEFAULT_REGION and stored in E.164; an impossible one a 422
naming the field and why."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from functions.sms import Sms
from functions.whatsapp import WhatsApp
from runtime import ConfigurationError, Jobs, Settings, SmsSettings, e164
from runtime.settings import use_settings
from streams.connection import Redis
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
