"""`sms.send` against real servers shaped like Twilio and like a deployment's own
callback endpoint: what arrives, the job's result, and how failures settle."""

from __future__ import annotations

import base64
import logging
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import standardwebhooks
from aiohttp import web

from functions import FUNCTIONS
from functions.sms import Sms, send_sms
from sluice.runtime import (
    Client,
    ConfigurationError,
    DeadLetters,
    Event,
    Function,
    Jobs,
    current_settings,
)
from sluice.runtime.registry import Registry
from sluice.runtime.settings import from_env
from sluice.runtime.testing import Rejected, call
from sluice.streams.connection import Redis
from tests.functions.providers import (
    Answer,
    ProviderServer,
    assert_rate_held,
    busiest_second,
    worker_for,
)
from tests.redis_server import RedisServer
from tests.runtime.helpers import LoopLag, total_counts, wait_completed, wait_until

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-token"
SECRET = "whsec_" + base64.b64encode(b"sixteen-or-more-bytes-of-key").decode()
# sms.send as declared, but retried at once: three attempts in well under a second.
FAST = Function(
    send_sms.name,
    send_sms.input,
    send_sms.handler,
    msgspec.structs.replace(send_sms.options, attempts=3, backoff_base_s=0.01, backoff_cap_s=0.02),
    batched=False,
    on_start=send_sms.on_start,
)
REGISTRY = Registry([FAST])


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    async with ProviderServer().serve() as server:
        yield server


def twilio(base_url: str, **more: str) -> dict[str, str]:
    return {
        "SLUICE_SMS_PROVIDER": "twilio",
        "SLUICE_TWILIO_ACCOUNT_SID": SID,
        "SLUICE_TWILIO_AUTH_TOKEN": TOKEN,
        "SLUICE_TWILIO_BASE_URL": base_url,
        "SLUICE_SMS_FROM": "+15550199",
        **more,
    }


async def publish(redis: Redis, **data: Any) -> str:
    sms = msgspec.convert({"to": "+15550100", "body": "See you at 10:00.", **data}, Sms)
    return (await Client(redis, REGISTRY).publish("sms.send", workspace="acme", data=sms)).id


async def result_of(redis: Redis, job_id: str) -> Any:
    record = await Jobs(redis, REGISTRY).get("sms.send", job_id)
    assert record is not None
    assert record.state == "completed", record
    return record.result


async def wait_dead(redis: Redis, n: int = 1) -> None:
    async def dead() -> bool:
        return (await total_counts(redis, "sms.send")).dead == n

    await wait_until(dead, what=f"{n} dead-lettered sms")


async def test_twilio_gets_a_form_post_with_basic_auth_and_the_result_keeps_its_sid(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    media = ["https://example.com/a.png", "https://example.com/b.pdf"]
    given = await publish(
        redis, **{"from": "MG123"}, media_urls=media, metadata={"booking": {"id": 7}}
    )
    default = await publish(redis, body="Zürich: 30 € — ok")
    async with worker_for(shared_server.url, FAST, twilio(provider.url)):
        await wait_completed(redis, "sms.send", 2)
    assert len(provider.arrivals) == 2
    for arrival in provider.arrivals:
        assert arrival.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
        expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        assert arrival.headers["Authorization"] == f"Basic {expected}"
    forms = sorted((a.form for a in provider.arrivals), key=lambda form: "MediaUrl" in form)
    assert forms == [
        {"To": ["+15550100"], "From": ["+15550199"], "Body": ["Zürich: 30 € — ok"]},
        {
            "To": ["+15550100"],
            "MessagingServiceSid": ["MG123"],
            "Body": ["See you at 10:00."],
            "MediaUrl": media,
        },
    ]
    assert await result_of(redis, given) == {
        "provider": "twilio",
        "message_id": "SM0001",
        "segments": 1,
        "encoding": "GSM-7",
        "status": "queued",
    }
    # The em dash is not GSM-7: the whole body goes as UCS-2.
    assert (await result_of(redis, default))["encoding"] == "UCS-2"


async def test_the_callback_is_signed_the_standard_webhooks_way(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    provider.success = Answer(200, {"message_id": "app-42", "status": "accepted"})
    body = "x" * 161
    job_id = await publish(redis, body=body, metadata={"campaign": "spring", "step": 2})
    environ = {
        "SLUICE_SMS_PROVIDER": "callback",
        "SLUICE_SMS_CALLBACK_URL": f"{provider.url}/send-sms",
        "SLUICE_SMS_CALLBACK_SECRET": SECRET,
    }
    async with worker_for(shared_server.url, FAST, environ):
        await wait_completed(redis, "sms.send", 1)
    (arrival,) = provider.arrivals
    assert arrival.path == "/send-sms"
    assert arrival.headers["webhook-id"] == job_id
    payload = standardwebhooks.Webhook(SECRET).verify(arrival.body, arrival.headers)
    assert payload == {
        "id": job_id,
        "workspace": "acme",
        "attempt": 1,
        "to": "+15550100",
        "from": "",
        "body": body,
        "media_urls": [],
        "metadata": {"campaign": "spring", "step": 2},
        "segments": 2,
        "encoding": "GSM-7",
        "channel": "sms",
    }
    # Signed with another secret, or altered, it does not verify.
    other = "whsec_" + base64.b64encode(b"another-key-of-16-bytes").decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(arrival.body, arrival.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(arrival.body + b" ", arrival.headers)
    assert await result_of(redis, job_id) == {
        "provider": "callback",
        "message_id": "app-42",
        "segments": 2,
        "encoding": "GSM-7",
        "status": "accepted",
    }


async def test_a_429_is_retried_after_its_retry_after(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    busy = {"code": 20429, "message": "Too Many Requests", "status": 429}
    provider.answers = [Answer(429, busy, {"Retry-After": "1"})]
    job_id = await publish(redis)
    async with worker_for(shared_server.url, FAST, twilio(provider.url)):
        await wait_completed(redis, "sms.send", 1)
    first, second = provider.arrivals
    # The function's own backoff is 10-20 ms: only the provider's word waits a second.
    assert second.at_s - first.at_s >= 0.95
    assert (await result_of(redis, job_id))["message_id"] == "SM0001"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Answer(429, {"message": "slow down"}, {"Retry-After": "0"}), "Retry: twilio answered 429"),
        (Answer(500, {"message": "oops"}), "ProviderUnavailable: twilio answered 500: oops"),
        (Answer(503, "<html>down</html>"), "ProviderUnavailable: twilio answered 503"),
        (Answer(hang=True), "ProviderUnavailable: twilio: no answer within 0.2 s"),
        (None, "ProviderUnavailable: twilio: ClientConnectorError"),
        (Answer(401, {"code": 20003, "message": "Authenticate"}), "ProviderRefused"),
    ],
    ids=["429", "500", "503", "timeout", "refused", "401"],
)
async def test_provider_failures_are_retried_then_dead_lettered_with_their_history(
    redis: Redis,
    shared_server: RedisServer,
    provider: ProviderServer,
    failure: Answer | None,
    error: str,
) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}" if failure is None else provider.url
    provider.answers = [failure] * 3 if failure is not None else []
    job_id = await publish(redis)
    environ = twilio(base_url, SLUICE_SMS_TIMEOUT_S="0.2")
    async with worker_for(shared_server.url, FAST, environ):
        await wait_dead(redis)
    (letter,) = await DeadLetters(redis, REGISTRY).read("sms.send")
    assert letter.envelope.id == job_id
    assert letter.envelope.attempt == 3
    assert len(letter.envelope.errors) == 3
    assert all(e.startswith(error) for e in letter.envelope.errors), letter.envelope.errors
    assert len(provider.arrivals) == (0 if failure is None else 3)


async def test_a_bad_number_is_rejected_at_once_with_the_providers_reason(
    provider: ProviderServer,
) -> None:
    invalid = {"code": 21211, "message": "The 'To' number is not a valid phone number."}
    provider.answers = [Answer(400, {**invalid, "status": 400})]
    # The handler called as a worker would (runtime.testing): no Redis needed.
    outcome = await call(
        send_sms, {"to": "+15550100", "body": "hi"}, settings=from_env(twilio(provider.url))
    )
    assert isinstance(outcome, Rejected)
    assert outcome.error == (
        "Reject: twilio answered 400: The 'To' number is not a valid phone number. (code 21211)"
    )
    assert len(provider.arrivals) == 1


async def test_without_a_provider_messages_are_logged_and_the_worker_says_so_once(
    redis: Redis, shared_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="functions.sms")
    first, _ = [await publish(redis, body=f"hello {n}") for n in range(2)]
    async with worker_for(shared_server.url, FAST, {}):
        await wait_completed(redis, "sms.send", 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "sms.send: no SMS provider configured (SLUICE_SMS_PROVIDER): messages are only logged"
    ]
    assert sum("hello" in r.getMessage() for r in caplog.records) == 2
    assert await result_of(redis, first) == {
        "provider": "log",
        "message_id": first,
        "segments": 1,
        "encoding": "GSM-7",
        "status": "",
    }


def test_sms_settings_are_checked_at_start_and_keep_their_secrets_out_of_logs() -> None:
    with pytest.raises(ConfigurationError, match="needs SLUICE_TWILIO_ACCOUNT_SID"):
        from_env({"SLUICE_SMS_PROVIDER": "twilio"})
    with pytest.raises(ConfigurationError, match="needs SLUICE_SMS_CALLBACK_URL"):
        from_env({"SLUICE_SMS_PROVIDER": "callback", "SLUICE_SMS_CALLBACK_SECRET": SECRET})
    for bad in ("", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigurationError, match="SLUICE_SMS_CALLBACK_SECRET must be base64"):
            from_env(
                {
                    "SLUICE_SMS_PROVIDER": "callback",
                    "SLUICE_SMS_CALLBACK_URL": "https://app.example/send-sms",
                    "SLUICE_SMS_CALLBACK_SECRET": bad,
                }
            )
    with pytest.raises(ConfigurationError, match="SLUICE_SMS_PROVIDER='fax'"):
        from_env({"SLUICE_SMS_PROVIDER": "fax"})
    shown = repr(from_env(twilio("https://api.twilio.com")))
    assert TOKEN not in shown
    assert "twilio_auth_token='***'" in shown
    with pytest.raises(ConfigurationError, match="known only to handlers a worker runs"):
        current_settings()


def test_the_input_schema_describes_every_field() -> None:
    _, components = msgspec.json.schema_components([Sms])
    properties = components["Sms"]["properties"]
    assert set(properties) == {"to", "body", "from", "media_urls", "metadata"}
    assert all(properties[name].get("description") for name in properties), properties


def test_the_rate_is_50_a_second_unless_the_settings_say_otherwise() -> None:
    registry = Registry(FUNCTIONS)
    assert registry.by_name["sms.send"].options.rate_per_s == 50
    changed = registry.with_rates(from_env({"SLUICE_RATES": "sms.send=20"}).rates)
    assert changed.by_name["sms.send"].options.rate_per_s == 20
    assert changed.by_name["sms.send"].on_start is send_sms.on_start
    assert changed.by_name["email.send"] is registry.by_name["email.send"]
    with pytest.raises(
        ConfigurationError, match=re.escape("SLUICE_RATES: no function named 'fax.send'")
    ):
        registry.with_rates({"fax.send": 1})
    with pytest.raises(
        ConfigurationError, match=re.escape("SLUICE_RATES for 'sms.send': rate_per_s")
    ):
        registry.with_rates({"sms.send": -1})


async def test_the_rate_holds_under_load(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    # 20 a second with a second's burst: 50 messages take about 1.5 s, and no
    # second of arrivals holds more than the burst plus a second's rate (plus what
    # a stall of this busy machine's loop bunched: LoopLag).
    (limited,) = Registry([FAST]).with_rates({"sms.send": 20})
    sms = Sms(to="+15550100", body="Spring sale!")
    events = [Event(workspace=f"ws-{n % 5}", data=sms) for n in range(50)]
    await Client(redis, REGISTRY).publish_many("sms.send", events)
    async with (
        LoopLag().watching() as lag,
        worker_for(shared_server.url, limited, twilio(provider.url)),
    ):
        await wait_completed(redis, "sms.send", 50)
    assert len(provider.arrivals) == 50
    assert_rate_held([arrival.at_s for arrival in provider.arrivals], limited, lag)


async def test_a_stalled_worker_starts_the_slots_that_passed_at_once(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    # The README's caveat, held: jobs wait in the worker for their reserved slots,
    # so a worker that stood still for L s starts those whose slots passed at once,
    # up to rate x L more within the second after than the limit allows.
    (limited,) = Registry([FAST]).with_rates({"sms.send": 20})
    stalled = False

    def stall(_: web.Request) -> None:
        nonlocal stalled
        if not stalled:
            stalled = True
            time.sleep(0.5)  # the whole loop stands still: worker, server and test

    provider.on_arrival = stall
    sms = Sms(to="+15550100", body="Spring sale!")
    await Client(redis, REGISTRY).publish_many(
        "sms.send", [Event(workspace="acme", data=sms) for _ in range(60)]
    )
    async with (
        LoopLag().watching() as lag,
        worker_for(shared_server.url, limited, twilio(provider.url)),
    ):
        await wait_completed(redis, "sms.send", 60)
    times = [arrival.at_s for arrival in provider.arrivals]
    # After the stall: the burst's other 19, the 10 slots that passed in it and the
    # next second's 20; the last 10 in the second after.
    assert busiest_second(times) > 20 + 20
    assert lag.max_s >= 0.5
    assert_rate_held(times, limited, lag)
