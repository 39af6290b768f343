"""`webhook.deliver` against real receivers on loopback (allowed by the test's
SLUICE_WEBHOOK_ALLOW): what arrives, signed as Standard Webhooks say, the job's
result, and how each kind of answer settles the job and the endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import standardwebhooks

from functions.webhook import WebhookEvent, deliver_webhook
from sluice.runtime import Client, DeadLetters, Function, Jobs, Webhooks
from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis
from tests.functions.providers import Answer, ProviderServer, worker_for
from tests.functions.test_sms import closed_port
from tests.redis_server import RedisServer
from tests.runtime.helpers import total_counts, wait_completed, wait_until

# Retried at once: three attempts in well under a second.
FAST = Function(
    deliver_webhook.name,
    deliver_webhook.input,
    deliver_webhook.handler,
    msgspec.structs.replace(
        deliver_webhook.options, attempts=3, backoff_base_s=0.01, backoff_cap_s=0.02
    ),
    batched=True,
)
REGISTRY = Registry([FAST])
ALLOW = {"SLUICE_WEBHOOK_ALLOW": "127.0.0.1"}
NAME = "webhook.deliver"


@pytest.fixture
async def receiver() -> AsyncIterator[ProviderServer]:
    async with ProviderServer().serve() as server:
        server.success = Answer(204)
        yield server


async def publish(redis: Redis, endpoint: str = "", **data: Any) -> str:
    event = WebhookEvent(type="booking.created", data=data or {"booking": "b-1"}, endpoint=endpoint)
    return (await Client(redis, REGISTRY).publish(NAME, workspace="acme", data=event)).id


async def record_of(redis: Redis, job_id: str) -> Any:
    record = await Jobs(redis, REGISTRY).get(NAME, job_id)
    assert record is not None
    return record


async def wait_dead(redis: Redis, n: int = 1) -> None:
    async def dead() -> bool:
        return (await total_counts(redis, NAME)).dead == n

    await wait_until(dead, what=f"{n} dead-lettered events")


async def test_each_enabled_endpoint_gets_the_event_signed_with_its_own_secret(
    redis: Redis, shared_server: RedisServer, receiver: ProviderServer
) -> None:
    hooks = Webhooks(redis)
    first = await hooks.add("acme", f"{receiver.url}/one", "bookings")
    second = await hooks.add("acme", f"{receiver.url}/two")
    off = await hooks.add("acme", f"{receiver.url}/off")
    await hooks.disable("acme", off.id, "410 Gone")
    await hooks.add("other", f"{receiver.url}/other")
    job_id = await publish(redis, booking="b-42", at="2026-12-01T10:00:00+01:00")
    async with worker_for(shared_server.url, FAST, ALLOW):
        await wait_completed(redis, NAME, 1)
    arrivals = sorted(receiver.arrivals, key=lambda a: a.path)
    assert [a.path for a in arrivals] == ["/one", "/two"]
    for arrival, endpoint in zip(arrivals, (first, second), strict=True):
        assert arrival.headers["webhook-id"] == job_id
        payload = standardwebhooks.Webhook(endpoint.secret).verify(arrival.body, arrival.headers)
        assert payload["type"] == "booking.created"
        assert payload["data"] == {"booking": "b-42", "at": "2026-12-01T10:00:00+01:00"}
        assert payload["timestamp"].endswith("Z")
    # Each endpoint's secret is its own.
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(second.secret).verify(arrivals[0].body, arrivals[0].headers)
    record = await record_of(redis, job_id)
    assert record.state == "completed"
    assert sorted(record.result["endpoints"], key=lambda a: a["url"]) == [
        {
            "endpoint": first.id,
            "url": first.url,
            "outcome": "delivered",
            "status": 204,
            "detail": "",
        },
        {
            "endpoint": second.id,
            "url": second.url,
            "outcome": "delivered",
            "status": 204,
            "detail": "",
        },
    ]


async def test_an_event_may_name_its_endpoint(
    redis: Redis, shared_server: RedisServer, receiver: ProviderServer
) -> None:
    hooks = Webhooks(redis)
    await hooks.add("acme", f"{receiver.url}/one")
    chosen = await hooks.add("acme", f"{receiver.url}/two")
    await publish(redis, endpoint=chosen.id)
    await publish(redis, endpoint="ep_unknown")
    async with worker_for(shared_server.url, FAST, ALLOW):
        await wait_completed(redis, NAME, 1)
        await wait_dead(redis)
    assert [a.path for a in receiver.arrivals] == ["/two"]
    (letter,) = await DeadLetters(redis, REGISTRY).read(NAME)
    assert letter.envelope.errors == (
        "Reject: no webhook endpoint 'ep_unknown' in workspace 'acme'",
    )


async def test_410_gone_disables_the_endpoint(
    redis: Redis, shared_server: RedisServer, receiver: ProviderServer
) -> None:
    hooks = Webhooks(redis)
    gone = await hooks.add("acme", f"{receiver.url}/gone")
    receiver.answers = [Answer(410, {"detail": "unsubscribed"})]
    job_id = await publish(redis)
    async with worker_for(shared_server.url, FAST, ALLOW):
        await wait_completed(redis, NAME, 1)
        await publish(redis)
        await wait_completed(redis, NAME, 2)
    assert len(receiver.arrivals) == 1
    (answer,) = (await record_of(redis, job_id)).result["endpoints"]
    assert (answer["outcome"], answer["status"]) == ("gone", 410)
    found = await hooks.get("acme", gone.id)
    assert found is not None
    assert found.disabled == "410 Gone"
    assert found.disabled_ms > 0


async def test_a_retry_signs_with_the_same_webhook_id(
    redis: Redis, shared_server: RedisServer, receiver: ProviderServer
) -> None:
    await Webhooks(redis).add("acme", f"{receiver.url}/hook")
    receiver.answers = [Answer(503, {"detail": "deploying"})]
    job_id = await publish(redis)
    async with worker_for(shared_server.url, FAST, ALLOW):
        await wait_completed(redis, NAME, 1)
    first, second = receiver.arrivals
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == job_id
    assert first.body == second.body
    assert (await record_of(redis, job_id)).attempts == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Answer(429, {"detail": "slow down"}, {"Retry-After": "0"}), "Retry: ep_"),
        (Answer(500, {"detail": "oops"}), "ProviderUnavailable: ep_"),
        (Answer(hang=True), "ProviderUnavailable: ep_"),
        (None, "ProviderUnavailable: ep_"),
    ],
    ids=["429", "500", "timeout", "refused"],
)
async def test_failures_are_retried_then_dead_lettered_with_their_history(
    redis: Redis,
    shared_server: RedisServer,
    receiver: ProviderServer,
    failure: Answer | None,
    error: str,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook" if failure is None else f"{receiver.url}/hook"
    await Webhooks(redis).add("acme", url)
    receiver.answers = [failure] * 3 if failure is not None else []
    job_id = await publish(redis)
    async with worker_for(shared_server.url, FAST, {**ALLOW, "SLUICE_WEBHOOK_TIMEOUT_S": "0.2"}):
        await wait_dead(redis)
    (letter,) = await DeadLetters(redis, REGISTRY).read(NAME)
    assert letter.envelope.id == job_id
    assert letter.envelope.attempt == 3
    assert len(letter.envelope.errors) == 3
    assert all(e.startswith(error) for e in letter.envelope.errors), letter.envelope.errors
    assert len(receiver.arrivals) == (0 if failure is None else 3)


async def test_another_4xx_is_rejected_at_once(
    redis: Redis, shared_server: RedisServer, receiver: ProviderServer
) -> None:
    endpoint = await Webhooks(redis).add("acme", f"{receiver.url}/hook")
    receiver.answers = [Answer(400, {"detail": "unknown event type"})]
    await publish(redis)
    async with worker_for(shared_server.url, FAST, ALLOW):
        await wait_dead(redis)
    (letter,) = await DeadLetters(redis, REGISTRY).read(NAME)
    assert letter.envelope.errors == (
        f"Reject: {endpoint.id}: rejected (endpoint answered 400: unknown event type)",
    )
    assert len(receiver.arrivals) == 1


async def test_the_ssrf_guard_refuses_loopback_unless_allowed(
    redis: Redis, shared_server: RedisServer, receiver: ProviderServer
) -> None:
    endpoint = await Webhooks(redis).add("acme", receiver.url.replace("127.0.0.1", "localhost"))
    await publish(redis)
    async with worker_for(shared_server.url, FAST, {}):
        await wait_dead(redis)
    (letter,) = await DeadLetters(redis, REGISTRY).read(NAME)
    (error,) = letter.envelope.errors
    assert error.startswith(f"Reject: {endpoint.id}: rejected (refused: localhost (")
    assert "is a loopback address" in error
    assert receiver.arrivals == []


async def test_a_retry_posts_only_to_the_endpoints_that_did_not_answer_for_good(
    redis: Redis, shared_server: RedisServer, receiver: ProviderServer
) -> None:
    receiver.by_path = {"/refusing": Answer(422, {"detail": "unknown event type"})}
    async with ProviderServer().serve() as flaky:
        flaky.success = Answer(200)
        flaky.answers = [Answer(503), Answer(502)]
        hooks = Webhooks(redis)
        steady = await hooks.add("acme", f"{receiver.url}/steady")
        refusing = await hooks.add("acme", f"{receiver.url}/refusing")
        later = await hooks.add("acme", f"{flaky.url}/flaky")
        job_id = await publish(redis)
        async with worker_for(shared_server.url, FAST, ALLOW):
            await wait_completed(redis, NAME, 1)
        # Those that answered for good, once; the one that asked to retry, each attempt.
        assert sorted(a.path for a in receiver.arrivals) == ["/refusing", "/steady"]
        assert len(flaky.arrivals) == 3
        assert {a.headers["webhook-id"] for a in flaky.arrivals} == {job_id}
    record = await record_of(redis, job_id)
    assert record.attempts == 3
    shown = {a["endpoint"]: (a["outcome"], a["status"]) for a in record.result["endpoints"]}
    assert shown == {
        steady.id: ("delivered", 204),
        refusing.id: ("rejected", 422),
        later.id: ("delivered", 200),
    }
