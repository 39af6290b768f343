"""Webhook endpoints, per workspace: the Python API over streams.webhooks, used by
the ingress (/v1/webhooks/endpoints) and by `webhook.deliver` to find where to POST.

An endpoint's secret is made here, at its creation (Standard Webhooks' `whsec_`
form, 24 random bytes); the API shows it once, in the answer that creates it.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping

import yarl

from sluice.runtime.errors import InvalidEndpoint, TooManyEndpoints
from sluice.runtime.settings import Settings
from sluice.streams import webhooks
from sluice.streams.connection import Redis, connect
from sluice.streams.webhooks import Endpoint

# A workspace's endpoints, at most: each event is one POST per endpoint.
MAX_ENDPOINTS = 20
# How long a retried job's settled answers are kept: past its last retry (8
# attempts with backoff capped at an hour, a Retry-After of at most a day each).
SETTLED_TTL_S = 8 * 86_400
MAX_URL = 2048

__all__ = ["MAX_ENDPOINTS", "Endpoint", "Webhooks"]


class Webhooks:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, settings: Settings) -> AsyncIterator[Webhooks]:
        """Over a connection of its own, closed on exit: for a handler, which is
        given no Redis client (`webhook.deliver`, one per batch)."""
        redis = connect(settings.redis)
        try:
            yield cls(redis)
        finally:
            await redis.aclose()

    async def add(self, workspace: str, url: str, description: str = "") -> Endpoint:
        """A new endpoint with a new secret, which only this answer holds in full."""
        check_url(url)
        endpoint = Endpoint(
            id="ep_" + secrets.token_hex(8),
            url=url,
            secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            description=description,
            created_ms=int(time.time() * 1000),
        )
        if not await webhooks.add(self.redis, workspace, endpoint, MAX_ENDPOINTS):
            raise TooManyEndpoints(
                f"workspace {workspace!r} has {MAX_ENDPOINTS} webhook endpoints, the most it may"
            )
        return endpoint

    async def list(self, workspace: str) -> list[Endpoint]:
        return await webhooks.endpoints(self.redis, workspace)

    async def get(self, workspace: str, endpoint_id: str) -> Endpoint | None:
        return await webhooks.get(self.redis, workspace, endpoint_id)

    async def remove(self, workspace: str, endpoint_id: str) -> bool:
        return await webhooks.remove(self.redis, workspace, endpoint_id)

    async def settled(self, job_id: str) -> dict[str, bytes]:
        """The answers kept by `keep_settled` for the job (`job.id`), by endpoint id."""
        return await webhooks.settled(self.redis, job_id)

    async def keep_settled(self, job_id: str, answers: Mapping[str, bytes]) -> None:
        """Keep, for the job's later attempts, the answers of endpoints not to be
        POSTed to again (they took the event, or refused it for good)."""
        await webhooks.keep_settled(self.redis, job_id, answers, SETTLED_TTL_S)

    async def disable(self, workspace: str, endpoint_id: str, why: str) -> bool:
        """No more deliveries to the endpoint (its receiver said it is gone)."""
        now_ms = int(time.time() * 1000)
        return await webhooks.disable(self.redis, workspace, endpoint_id, why, now_ms)


def check_url(url: str) -> None:
    """An absolute http(s) URL, or `InvalidEndpoint`. Where it may point is the
    SSRF guard's to say, at each delivery: a name's addresses change."""
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError):
        parsed = None
    if (
        parsed is None
        or len(url) > MAX_URL
        or parsed.scheme not in ("http", "https")
        or not parsed.host
        or parsed.user is not None
    ):
        raise InvalidEndpoint(f"endpoint url must be an http or https URL, got {url[:100]!r}")
