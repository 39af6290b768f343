"""`whatsapp.send` against a real server shaped like the WhatsApp Business Cloud API,
and a callback receiver: what arrives, the job's result, how Meta's errors settle."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import standardwebhooks

from functions.whatsapp import WhatsApp, send_whatsapp
from sluice.runtime import Client, ConfigurationError, Event, Function, InvalidPayload, Jobs
from sluice.runtime.registry import Registry
from sluice.runtime.settings import from_env
from sluice.runtime.testing import Completed, Failed, Rejected, Retried, call
from sluice.streams.connection import Redis
from tests.functions.providers import (
    Answer,
    ProviderServer,
    assert_rate_held,
    worker_for,
)
from tests.redis_server import RedisServer
from tests.runtime.helpers import LoopLag, wait_completed

TOKEN = "EAAG-cloud-token"
SECRET = "whsec_" + base64.b64encode(b"a-whatsapp-signing-key").decode()
FAST = Function(
    send_whatsapp.name,
    send_whatsapp.input,
    send_whatsapp.handler,
    msgspec.structs.replace(
        send_whatsapp.options, attempts=3, backoff_base_s=0.01, backoff_cap_s=0.02
    ),
    batched=False,
    on_start=send_whatsapp.on_start,
)
REGISTRY = Registry([FAST])
ACCEPTED = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "+15550100", "wa_id": "15550100"}],
    "messages": [{"id": "wamid.HBgLMTU1NTAxMDA", "message_status": "accepted"}],
}


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    async with ProviderServer().serve() as server:
        server.success = Answer(200, ACCEPTED)
        yield server


def cloud(base_url: str) -> dict[str, str]:
    return {
        "SLUICE_WHATSAPP_PROVIDER": "cloud",
        "SLUICE_WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
        "SLUICE_WHATSAPP_ACCESS_TOKEN": TOKEN,
        "SLUICE_WHATSAPP_BASE_URL": f"{base_url}/v21.0",
    }


async def publish(redis: Redis, **data: Any) -> str:
    receipt = await Client(redis, REGISTRY).publish(
        "whatsapp.send", workspace="acme", data={"to": "+15550100", **data}
    )
    return receipt.id


async def result_of(redis: Redis, job_id: str) -> Any:
    record = await Jobs(redis, REGISTRY).get("whatsapp.send", job_id)
    assert record is not None
    assert record.state == "completed", record
    return record.result


async def test_texts_and_templates_reach_the_cloud_api_with_the_bearer_token(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    text = await publish(redis, text="Your table is ready: https://example.com", preview_url=True)
    header = {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x"}}]}
    template = {
        "name": "appointment_reminder",
        "language": "de",
        "parameters": ["Ada", "10:00"],
        "components": [header],
    }
    await publish(redis, template=template)
    async with worker_for(shared_server.url, FAST, cloud(provider.url)):
        await wait_completed(redis, "whatsapp.send", 2)
    assert [a.path for a in provider.arrivals] == ["/v21.0/106540352242922/messages"] * 2
    assert {a.headers["Authorization"] for a in provider.arrivals} == {f"Bearer {TOKEN}"}
    bodies = sorted((msgspec.json.decode(a.body) for a in provider.arrivals), key=str)
    assert bodies == sorted(
        [
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+15550100",
                "type": "text",
                "text": {"body": "Your table is ready: https://example.com", "preview_url": True},
            },
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+15550100",
                "type": "template",
                "template": {
                    "name": "appointment_reminder",
                    "language": {"code": "de"},
                    "components": [
                        header,
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": "Ada"},
                                {"type": "text", "text": "10:00"},
                            ],
                        },
                    ],
                },
            },
        ],
        key=str,
    )
    assert await result_of(redis, text) == {
        "provider": "cloud",
        "message_id": "wamid.HBgLMTU1NTAxMDA",
        "status": "accepted",
    }


async def test_the_rate_holds_under_load(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    # 20 a second (SLUICE_RATES) with a second's burst: 50 messages in about 1.5 s.
    (limited,) = REGISTRY.with_rates({"whatsapp.send": 20})
    message = msgspec.convert({"to": "+15550100", "text": "Spring sale!"}, WhatsApp)
    events = [Event(workspace=f"ws-{n % 5}", data=message) for n in range(50)]
    await Client(redis, REGISTRY).publish_many("whatsapp.send", events)
    async with (
        LoopLag().watching() as lag,
        worker_for(shared_server.url, limited, cloud(provider.url)),
    ):
        await wait_completed(redis, "whatsapp.send", 50)
    assert len(provider.arrivals) == 50
    assert {a.path for a in provider.arrivals} == {"/v21.0/106540352242922/messages"}
    assert_rate_held([arrival.at_s for arrival in provider.arrivals], limited, lag)


async def test_the_callback_is_signed(
    redis: Redis, shared_server: RedisServer, provider: ProviderServer
) -> None:
    provider.success = Answer(204)
    job_id = await publish(redis, text="hi", metadata={"order": 42})
    environ = {
        "SLUICE_WHATSAPP_PROVIDER": "callback",
        "SLUICE_WHATSAPP_CALLBACK_URL": f"{provider.url}/send-whatsapp",
        "SLUICE_WHATSAPP_CALLBACK_SECRET": SECRET,
    }
    async with worker_for(shared_server.url, FAST, environ):
        await wait_completed(redis, "whatsapp.send", 1)
    (arrival,) = provider.arrivals
    assert standardwebhooks.Webhook(SECRET).verify(arrival.body, arrival.headers) == {
        "id": job_id,
        "workspace": "acme",
        "attempt": 1,
        "to": "+15550100",
        "text": "hi",
        "template": None,
        "preview_url": False,
        "metadata": {"order": 42},
        "channel": "whatsapp",
    }
    # No id in a 204: the job's own stands for it.
    assert (await result_of(redis, job_id))["message_id"] == job_id


def meta_error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code}}


async def test_metas_not_now_codes_are_retried_and_its_refusals_rejected(
    provider: ProviderServer,
) -> None:
    # The handler called as a worker would (runtime.testing): no Redis needed.
    settings = from_env(cloud(provider.url))
    provider.answers = [Answer(400, meta_error(130429, "(#130429) Rate limit hit"))]
    data = {"to": "+15550100", "text": "first"}
    busy = await call(send_whatsapp, data, settings=settings)
    assert isinstance(busy, Failed | Retried)
    assert not isinstance(busy, Failed) or not busy.dead
    sent = await call(send_whatsapp, data, attempt=2, settings=settings)
    assert isinstance(sent, Completed)
    assert sent.result.message_id == "wamid.HBgLMTU1NTAxMDA"
    provider.answers = [Answer(400, meta_error(131047, "(#131047) Re-engagement message"))]
    refused = await call(send_whatsapp, {**data, "text": "second"}, settings=settings)
    assert isinstance(refused, Rejected)
    assert refused.error == (
        "Reject: whatsapp answered 400: (#131047) Re-engagement message (code 131047)"
    )


async def test_a_message_is_a_text_or_a_template(redis: Redis) -> None:
    for data in ({}, {"text": "hi", "template": {"name": "t"}}):
        with pytest.raises(InvalidPayload, match="give `text` or `template`"):
            await publish(redis, **data)
    with pytest.raises(InvalidPayload, match=r"\$.template.language"):
        await publish(redis, template={"name": "t", "language": "English"})
    assert msgspec.convert({"to": "+15550100", "template": {"name": "t"}}, WhatsApp)


async def test_without_a_provider_the_worker_says_so_once_at_start(
    redis: Redis, shared_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="functions.whatsapp")
    await publish(redis, text="hello")
    async with worker_for(shared_server.url, FAST, {}):
        await wait_completed(redis, "whatsapp.send", 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "whatsapp.send: no WhatsApp provider configured (SLUICE_WHATSAPP_PROVIDER): "
        "messages are only logged"
    ]


def test_whatsapp_settings_are_checked_at_start_and_keep_their_secrets_out_of_logs() -> None:
    with pytest.raises(ConfigurationError, match="needs SLUICE_WHATSAPP_PHONE_NUMBER_ID"):
        from_env({"SLUICE_WHATSAPP_PROVIDER": "cloud"})
    with pytest.raises(ConfigurationError, match="SLUICE_WHATSAPP_CALLBACK_SECRET must be"):
        from_env(
            {
                "SLUICE_WHATSAPP_PROVIDER": "callback",
                "SLUICE_WHATSAPP_CALLBACK_URL": "https://app.example/send-whatsapp",
            }
        )
    shown = repr(from_env(cloud("https://graph.example")))
    assert TOKEN not in shown
    assert "access_token='***'" in shown
