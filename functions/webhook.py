"""`webhook.deliver`: POST an event to a workspace's webhook endpoints, signed the
Standard Webhooks way.

The endpoints and their secrets are the workspace's own (`POST
/v1/webhooks/endpoints`, runtime.client.webhooks); a job goes to every enabled
one, or to the one it names. Each POST carries `{"type", "timestamp", "data"}`
and the headers `webhook-id` (the job's id: the same on every retry, for the
receiver to drop a second delivery), `webhook-timestamp` and `webhook-signature`
(functions/signing.py). The SSRF guard (functions/ssrf.py) checks every address
the endpoint's host resolves to before connecting, and connects to those only.

How it fails, per endpoint (the job's result lists each one's answer):
- 2xx: delivered. 410 Gone: the endpoint is disabled (no more deliveries).
- 429, 408, 425, 5xx, 401/403, a timeout, a refused connection or a name that
  does not resolve: the job is retried, after the receiver's Retry-After when it
  gave one (functions/provider.py), else with the function's backoff, and
  dead-lettered with every attempt's answers after the last.
- any other 4xx (a 3xx too: redirects are not followed) or an address the guard
  refuses: rejected; a job that reached no endpoint and was rejected by one is
  dead-lettered at once.
A retried job POSTs again only to the endpoints that asked for it (those that
answered for good are kept for its next attempts, runtime.client.webhooks),
under the same `webhook-id`. Delivery is at least once all the same: a worker
lost mid-job, or an answer lost to a timeout, means a second POST.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import aiohttp
import msgspec

from functions.provider import ProviderUnavailable, failure
from functions.signing import signed_headers
from functions.ssrf import Pinned, Refused, Unresolved, check
from sluice.runtime import (
    Batch,
    Job,
    Reject,
    Retry,
    WebhookEndpoint,
    Webhooks,
    WebhookSettings,
    batch_function,
    current_settings,
)

# POSTs in flight at once for one batch (a workspace's jobs, each to each endpoint).
IN_FLIGHT = 32
# Bytes of an endpoint's answer read: enough for its reason.
MAX_ANSWER = 16 * 1024
Outcome = Literal["delivered", "gone", "retry", "rejected"]


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event for a workspace's webhook endpoints."""

    type: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_.:\-]{1,128}$",
            description="What happened (`booking.created`): receivers route on it.",
        ),
    ]
    data: Annotated[Any, msgspec.Meta(description="The event's content: any JSON.")]
    endpoint: Annotated[
        str,
        msgspec.Meta(
            max_length=64,
            description="Only this endpoint (its id); empty: every enabled endpoint "
            "of the workspace.",
        ),
    ] = ""


class Answer(msgspec.Struct, frozen=True):
    """What one endpoint answered."""

    endpoint: str
    url: str
    outcome: Outcome
    # The HTTP status, 0 when there was none (no connection, refused by the guard).
    status: int = 0
    detail: str = ""


class Delivered(msgspec.Struct, frozen=True):
    """A job's result: each endpoint's answer."""

    endpoints: list[Answer]


_encode = msgspec.msgpack.Encoder().encode
_answer = msgspec.msgpack.Decoder(Answer)


class Message(msgspec.Struct, frozen=True):
    """The body POSTed: Standard Webhooks' recommended shape."""

    type: str
    timestamp: str
    data: Any


@batch_function(
    "webhook.deliver",
    input=WebhookEvent,
    example=WebhookEvent(type="booking.created", data={"booking": "b-42"}),
    # 10 jobs to up to 20 endpoints each, 32 POSTs at a time of at most
    # SLUICE_WEBHOOK_TIMEOUT_S (10 s): about 70 s at worst, within the timeout.
    batch_size=10,
    concurrency=8,
    timeout_s=120,
    attempts=8,
    backoff_base_s=5,
    backoff_cap_s=3600,
)
async def deliver_webhook(batch: Batch[WebhookEvent]) -> None:
    settings = current_settings()
    async with Webhooks.connected(settings) as registry:
        endpoints = await registry.list(batch.workspace)
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def one(job: Job[WebhookEvent]) -> None:
            try:
                batch.result(job, await _deliver(job, endpoints, registry, settings.webhook, limit))
            except Exception as exc:
                batch.fail(job, exc)

        await asyncio.gather(*(one(job) for job in batch.jobs))


async def _deliver(
    job: Job[WebhookEvent],
    endpoints: list[WebhookEndpoint],
    registry: Webhooks,
    settings: WebhookSettings,
    limit: asyncio.Semaphore,
) -> Delivered:
    """Each target endpoint's answer; raises what settles the job otherwise."""
    event = job.data
    if event.endpoint:
        targets = [e for e in endpoints if e.id == event.endpoint]
        if not targets:
            raise Reject(f"no webhook endpoint {event.endpoint!r} in workspace {job.workspace!r}")
        if targets[0].disabled:
            raise Reject(f"webhook endpoint {event.endpoint!r} is disabled: {targets[0].disabled}")
    else:
        targets = [e for e in endpoints if not e.disabled]
    earlier: list[Answer] = []
    if job.attempt > 1 or job.deliveries > 1:
        # Endpoints that answered for good on an earlier attempt are not POSTed to again.
        earlier = [_answer.decode(raw) for raw in (await registry.settled(job.id)).values()]
        done = {answer.endpoint for answer in earlier}
        targets = [endpoint for endpoint in targets if endpoint.id not in done]
    sent = datetime.fromtimestamp(job.created_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    body = msgspec.json.encode(Message(event.type, sent, event.data))

    async def post(endpoint: WebhookEndpoint) -> tuple[Answer, Exception | None]:
        async with limit:
            answer, error = await _post(endpoint, job.id, body, settings)
        if answer.outcome == "gone":
            await registry.disable(job.workspace, endpoint.id, "410 Gone")
        return answer, error

    answers = await asyncio.gather(*(post(endpoint) for endpoint in targets))
    final = {a.endpoint: _encode(a) for a, _ in answers if a.outcome != "retry"}
    if final and len(final) < len(answers):
        # Some will be tried again: the next attempt skips these.
        await registry.keep_settled(job.id, final)
    _settle([*((answer, None) for answer in earlier), *answers])
    return Delivered([*earlier, *(answer for answer, _ in answers)])


def _settle(answers: list[tuple[Answer, Exception | None]]) -> None:
    """Raise for a job to retry (an endpoint may take it later) or to reject (none did
    nor will); return for a job that is done."""
    summary = "; ".join(
        f"{a.endpoint}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a, _ in answers
    )
    retries = [error for answer, error in answers if answer.outcome == "retry"]
    if retries:
        afters = [e.after_s for e in retries if isinstance(e, Retry) and e.after_s is not None]
        if len(afters) == len(retries):
            raise Retry(summary, after=max(afters))
        raise ProviderUnavailable(summary)
    outcomes = {answer.outcome for answer, _ in answers}
    if "rejected" in outcomes and "delivered" not in outcomes:
        raise Reject(summary)


async def _post(
    endpoint: WebhookEndpoint, job_id: str, body: bytes, settings: WebhookSettings
) -> tuple[Answer, Exception | None]:
    """POST `body` to one endpoint: its answer, and the error that says when to
    retry (None unless it is to be retried)."""

    def answer(outcome: Outcome, status: int = 0, detail: str = "") -> Answer:
        return Answer(endpoint.id, endpoint.url, outcome, status, detail)

    try:
        target = await check(endpoint.url, settings)
    except Refused as exc:
        return answer("rejected", detail=f"refused: {exc}"), None
    except Unresolved as exc:
        return answer("retry", detail=str(exc)), exc
    # Made by runtime.client.webhooks: "whsec_" and base64.
    key = base64.b64decode(endpoint.secret.removeprefix("whsec_"))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Sluice-Webhooks",
        **signed_headers(key, job_id, body),
    }
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=Pinned(target)),
                timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
            ) as session,
            session.post(endpoint.url, data=body, headers=headers, allow_redirects=False) as reply,
        ):
            # Only the start of the answer: the endpoint is the tenant's, and its
            # answer's size too; the reason fits in far less (functions/provider.py).
            status, answered = reply.status, await reply.content.read(MAX_ANSWER)
            retry_headers = reply.headers
    except TimeoutError:
        error = ProviderUnavailable(f"no answer within {settings.timeout_s:g} s")
        return answer("retry", detail=str(error)), error
    except aiohttp.ClientError as exc:
        error = ProviderUnavailable(f"{type(exc).__name__}: {exc}")
        return answer("retry", detail=str(error)), error
    if 200 <= status < 300:
        return answer("delivered", status), None
    if status == 410:
        return answer("gone", status, "disabled"), None
    settled = failure("endpoint", status, retry_headers, answered)
    if isinstance(settled, Reject):
        return answer("rejected", status, str(settled)), None
    return answer("retry", status, str(settled)), settled
