"""A workspace's webhook endpoints: where `webhook.deliver` POSTs its events, and
the secret each one's deliveries are signed with.

One HASH per workspace (`keys.webhook_endpoints`), endpoint id -> record. An
endpoint's record changes only when it is disabled (its receiver answered 410
Gone); the changes that read before they write (add under a cap, disable) run
as WATCHed transactions on that one key, so a concurrent remove or add is never
undone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import webhook_endpoints, webhook_settled


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """One endpoint as stored; new fields get defaults (records outlive releases)."""

    id: str
    url: str
    # "whsec_" + base64 of the HMAC key (Standard Webhooks).
    secret: str
    description: str = ""
    created_ms: int = 0
    # Why deliveries stopped ("": they have not) and when (ms).
    disabled: str = ""
    disabled_ms: int = 0


_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Endpoint)


def _decode(raw: bytes | str) -> Endpoint:
    # Always bytes: the clients are made without decode_responses.
    assert isinstance(raw, bytes)
    return _decoder.decode(raw)


async def add(client: Redis, workspace: str, endpoint: Endpoint, limit: int) -> bool:
    """Store `endpoint` unless the workspace has `limit` endpoints already (False)."""
    key = webhook_endpoints(workspace)

    async def within_limit(pipe: Any) -> bool:
        if await pipe.hlen(key) >= limit:
            return False
        pipe.multi()
        pipe.hset(key, endpoint.id, _encode(endpoint))
        return True

    with wrap_unavailable():
        # redis-py's cluster client annotates `func` as a coroutine; it takes the function.
        added: bool = await client.transaction(within_limit, key, value_from_callable=True)  # type: ignore[arg-type]
    return added


async def endpoints(client: Redis, workspace: str) -> list[Endpoint]:
    """The workspace's endpoints, oldest first."""
    with wrap_unavailable():
        stored = await client.hvals(webhook_endpoints(workspace))
    return sorted((_decode(raw) for raw in stored), key=lambda e: (e.created_ms, e.id))


async def get(client: Redis, workspace: str, endpoint_id: str) -> Endpoint | None:
    with wrap_unavailable():
        raw = await client.hget(webhook_endpoints(workspace), endpoint_id)
    return None if raw is None else _decode(raw)


async def remove(client: Redis, workspace: str, endpoint_id: str) -> bool:
    """Delete the endpoint; False if there was none."""
    with wrap_unavailable():
        return bool(await client.hdel(webhook_endpoints(workspace), endpoint_id))


async def disable(client: Redis, workspace: str, endpoint_id: str, why: str, now_ms: int) -> bool:
    """Stop deliveries to the endpoint, saying why; False if it is gone (removed
    meanwhile: not written back)."""
    key = webhook_endpoints(workspace)

    async def if_present(pipe: Any) -> bool:
        raw = await pipe.hget(key, endpoint_id)
        if raw is None:
            return False
        found = _decode(raw)
        pipe.multi()
        pipe.hset(
            key,
            endpoint_id,
            _encode(msgspec.structs.replace(found, disabled=why, disabled_ms=now_ms)),
        )
        return True

    with wrap_unavailable():
        done: bool = await client.transaction(if_present, key, value_from_callable=True)  # type: ignore[arg-type]  # as above
    return done


async def settled(client: Redis, job_id: str) -> dict[str, bytes]:
    """What the job's endpoints that answered for good on earlier attempts answered."""
    with wrap_unavailable():
        found = await client.hgetall(webhook_settled(job_id))
    return {_text(endpoint): _bytes(answer) for endpoint, answer in found.items()}


async def keep_settled(
    client: Redis, job_id: str, answers: Mapping[str, bytes], ttl_s: int
) -> None:
    """Add `answers` (endpoint id -> answer) to the job's, kept `ttl_s` from now:
    past its last retry the job needs them no more."""
    key = webhook_settled(job_id)
    with wrap_unavailable():
        async with client.pipeline(transaction=True) as pipe:
            for endpoint, answer in answers.items():
                pipe.hset(key, endpoint, answer)
            pipe.expire(key, ttl_s)
            await pipe.execute()


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode()
