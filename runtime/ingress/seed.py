"""The BullMQ service's routes, in its shapes, for teams moving their apps over
(MIGRATING.md): schedule an SMS or an email, its job API's email job, its metrics
and their reset, its queue health, and its dashboard's addresses.

The service had no keys; here every route but the dashboard page needs one (the
one header a migrated app adds). A body's `workspaceId` must be one of the key's
workspaces; absent, the workspace is the key's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from sluice.runtime.client.publish import Event
from sluice.runtime.errors import UnknownFunction
from sluice.runtime.ingress.auth import ApiKey, require_workspace, scope
from sluice.runtime.ingress.bodies import (
    BullMQChannelRates,
    BullMQEmail,
    BullMQHealth,
    BullMQMetrics,
    BullMQMetricsReset,
    BullMQQueueCounts,
    BullMQRedis,
    BullMQReply,
    BullMQResetDone,
    BullMQSms,
    BullMQWorkspaceMetrics,
)
from sluice.runtime.ingress.dashboard import dashboard
from sluice.runtime.ingress.health import READY_TIMEOUT_S
from sluice.runtime.ingress.problems import invalid, not_found
from sluice.runtime.ingress.publish import IDEMPOTENCY, IDEMPOTENCY_HEADER, submit
from sluice.runtime.ingress.routes import Keyed, Public, Route, Services, read_json, reply
from sluice.runtime.ingress.views import (
    BullMQChannel,
    BullMQRateLimit,
    channel_view,
    iso_ms,
    rate_limit_view,
    rate_summary_view,
)
from sluice.runtime.phones import e164, in_workspace
from sluice.streams.keys import check_token
from sluice.streams.ratelimit import Deferral

TAG = "migration"
# The service's channels, and the functions that took them over.
CHANNELS = {"sms": "sms.send", "email": "email.send"}
_WORKSPACE_QUERY = {"workspace": (str, "whose figures, for a key of several (admin: all)")}


def _workspace(key: ApiKey, given: str | None) -> str:
    """The workspace a seed route acts for: `workspaceId` as given, if the key may act
    for it; absent, the key's own (one that has several, or none, must name it)."""
    if given is not None:
        require_workspace(key, given)
        return given
    if len(key.workspaces) != 1:
        raise invalid("$.workspaceId", "give workspaceId: this key has no single workspace")
    return key.workspaces[0]


def _now() -> str:
    return iso_ms(int(time.time() * 1000))


def _has(services: Services, function: str) -> bool:
    try:
        services.registry.select([function])
    except UnknownFunction:
        return False
    return True


async def _publish(
    request: web.Request,
    services: Services,
    key: ApiKey,
    topic: str,
    workspace: str,
    data: dict[str, Any],
    **when: Any,
) -> web.Response:
    if not _has(services, topic):
        raise not_found(f"this deployment has no {topic} function")
    event = Event(
        workspace=workspace, data=data, id=request.headers.get(IDEMPOTENCY_HEADER), **when
    )
    (receipt,) = await submit(services, key, topic, [event])
    return reply(BullMQReply(True, receipt.id), 200 if receipt.duplicate else 202)


async def schedule_email(
    request: web.Request, services: Services, key: ApiKey
) -> web.StreamResponse:
    body = await read_json(request, BullMQEmail)
    workspace = _workspace(key, body.workspaceId)
    data = {"to": body.to, "subject": body.subject, "html": body.html, "contact_id": body.contactId}
    return await _publish(request, services, key, "email.send", workspace, data,
                          delay_ms=body.delay or None)  # fmt: skip


async def schedule_sms(request: web.Request, services: Services, key: ApiKey) -> web.StreamResponse:
    body = await read_json(request, BullMQSms)
    workspace = _workspace(key, body.workspaceId)
    try:  # here, to name the seed's field rather than sms.send's `to`
        with in_workspace(workspace):
            to = e164(body.phoneNumber, "phoneNumber")
    except ValueError as exc:
        raise invalid("$.phoneNumber", str(exc)) from None
    data = {"to": to, "body": body.message, "metadata": body.metadata}
    return await _publish(request, services, key, "sms.send", workspace, data,
                          run_at=body.scheduledFor)  # fmt: skip


async def _channel(services: Services, function: str, workspace: str | None) -> BullMQChannel:
    if not _has(services, function):
        return BullMQChannel(totalProcessed=0, batchesProcessed=0, successRate=0.0,
                             avgProcessingTime=0.0, throughput=0.0, rateExceededCount=0,
                             lastProcessedTime=None)  # fmt: skip
    return channel_view(await services.metrics.read(function, workspace))


async def _deferrals(services: Services, function: str) -> dict[str, Deferral]:
    return await services.limits.deferrals(function) if _has(services, function) else {}


async def metrics(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    workspace = scope(key, request.query.get("workspace"))
    sms = await _deferrals(services, CHANNELS["sms"])
    email = await _deferrals(services, CHANNELS["email"])
    held = sorted({*sms, *email} if workspace is None else {*sms, *email} & {workspace})
    return reply(
        BullMQMetrics(
            sms=await _channel(services, CHANNELS["sms"], workspace),
            email=await _channel(services, CHANNELS["email"], workspace),
            workspaceRateLimits={
                w: BullMQChannelRates(
                    rate_summary_view(sms.get(w)), rate_summary_view(email.get(w))
                )
                for w in held
            },
            timestamp=_now(),
        )
    )


async def _rate_limit(services: Services, function: str, workspace: str) -> BullMQRateLimit:
    if not _has(services, function):
        return rate_limit_view(None, [])
    deferral = (await services.limits.deferrals(function)).get(workspace)
    return rate_limit_view(deferral, await services.limits.history(function, workspace))


async def workspace_metrics(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    workspace = check_token("workspace", request.match_info["workspace"])
    require_workspace(key, workspace)
    return reply(
        BullMQWorkspaceMetrics(
            workspaceId=workspace,
            sms=await _rate_limit(services, CHANNELS["sms"], workspace),
            email=await _rate_limit(services, CHANNELS["email"], workspace),
            timestamp=_now(),
        )
    )


async def reset_metrics(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    body = await read_json(request, BullMQMetricsReset)
    # An admin key naming no workspace resets every workspace's, as the service did.
    workspace = None if key.admin and body.workspaceId is None else (
        _workspace(key, body.workspaceId))  # fmt: skip
    channels = [body.type] if body.type else list(CHANNELS)
    for channel in channels:
        if _has(services, CHANNELS[channel]):
            await services.metrics.reset(CHANNELS[channel], workspace)
    whose = f"workspace {workspace}" if workspace else "every workspace"
    return reply(BullMQResetDone(True, f"{' and '.join(channels)} metrics reset for {whose}"))


async def queue_health(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    started = time.perf_counter()
    # asyncio.wait, not wait_for: the ping is not waited on past the timeout.
    ping = asyncio.ensure_future(services.redis.ping())
    done, _ = await asyncio.wait([ping], timeout=READY_TIMEOUT_S)
    if not done or ping.exception() is not None:
        ping.cancel()
        down = BullMQHealth("unavailable", BullMQRedis(False, 0.0), {}, _now())
        return reply(down, 503)
    latency = round((time.perf_counter() - started) * 1000, 2)
    queues = {}
    if key.admin:  # the counts are every workspace's jobs
        for fn in services.registry:
            counts = await services.jobs.counts(fn.name)
            queues[fn.name] = BullMQQueueCounts(
                counts.waiting, counts.active, counts.delayed, counts.dead
            )
    return reply(BullMQHealth("ok", BullMQRedis(True, latency), queues, _now()))


ROUTES = [
    Route("POST", "/api/schedule-sms", Keyed(schedule_sms),
          "Schedule an SMS (the BullMQ service's route)", TAG,
          body=BullMQSms, replies={202: BullMQReply, 200: BullMQReply}, headers=IDEMPOTENCY),
    Route("POST", "/api/schedule-email", Keyed(schedule_email),
          "Schedule an email (the BullMQ service's route)", TAG,
          body=BullMQEmail, replies={202: BullMQReply, 200: BullMQReply}, headers=IDEMPOTENCY),
    Route("POST", "/api/jobs", Keyed(schedule_email),
          "Add an email job (the BullMQ service's job API)", TAG,
          body=BullMQEmail, replies={202: BullMQReply, 200: BullMQReply}, headers=IDEMPOTENCY),
    Route("GET", "/api/metrics", Keyed(metrics),
          "SMS and email metrics, and workspaces held back by the rate limits (the BullMQ "
          "service's shape): the deployment's for an admin key, else the key's workspace's",
          TAG, replies={200: BullMQMetrics}, query=_WORKSPACE_QUERY),
    Route("GET", "/api/metrics/workspace/{workspace}", Keyed(workspace_metrics),
          "A workspace's rate-limit records per channel, with its last seconds of deferrals",
          TAG, replies={200: BullMQWorkspaceMetrics}),
    Route("POST", "/api/metrics/reset", Keyed(reset_metrics),
          "Clear a workspace's SMS or email metrics (or both) and its rate-limit records",
          TAG, body=BullMQMetricsReset, replies={200: BullMQResetDone}),
    Route("GET", "/api/v1/queue/health", Keyed(queue_health),
          "Redis reachable, and each queue's counts (admin keys)", TAG,
          replies={200: BullMQHealth, 503: BullMQHealth}),
    Route("GET", "/admin/queues", Public(dashboard), "The dashboard (Bull Board's address)",
          TAG, replies={200: "text/html"}),
    Route("GET", "/dashboard", Public(dashboard), "The dashboard", TAG,
          replies={200: "text/html"}),
]  # fmt: skip
