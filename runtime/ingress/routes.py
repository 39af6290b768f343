"""What every route shares: the process's services, the route table's entry type,
and reading and writing bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import msgspec
from aiohttp import hdrs, web

from sluice.runtime.client.deadletters import DeadLetters
from sluice.runtime.client.jobs import Jobs
from sluice.runtime.client.limits import Limits
from sluice.runtime.client.metrics import Metrics
from sluice.runtime.client.pauses import Pauses
from sluice.runtime.client.publish import Client
from sluice.runtime.health import RedisHealth
from sluice.runtime.ingress.auth import ApiKey, KeyRing
from sluice.runtime.ingress.coalesce import Coalescer
from sluice.runtime.ingress.problems import Problem, from_validation
from sluice.runtime.registry import Registry
from sluice.streams.connection import Redis

if TYPE_CHECKING:
    from sluice.runtime.ingress.prometheus import Exposition

T = TypeVar("T")

JSON = "application/json"
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class Services:
    """What the routes work with, one of each per process."""

    redis: Redis
    registry: Registry
    client: Client
    jobs: Jobs
    dead: DeadLetters
    metrics: Metrics
    limits: Limits
    pauses: Pauses
    keys: KeyRing
    # Publishes of concurrent requests written together, each confirmed in time or failed.
    coalescer: Coalescer
    health: RedisHealth
    # What /metrics shows (runtime.ingress.prometheus).
    exposition: Exposition
    # Per topic, the body decoders of its input type (runtime.ingress.publish).
    decoders: dict[str, Any] = field(default_factory=dict)


Answer = Awaitable[web.StreamResponse]
Access = Literal["public", "key", "admin"]


@dataclass(frozen=True)
class Public:
    """A route anyone may call: its handler is given no key."""

    call: Callable[[web.Request, Services], Answer]
    access: ClassVar[Access] = "public"


@dataclass(frozen=True)
class Keyed:
    """A route any known key may call: its handler is given the key, and checks the
    workspaces it names against the key's."""

    call: Callable[[web.Request, Services, ApiKey], Answer]
    access: ClassVar[Access] = "key"


@dataclass(frozen=True)
class Admin:
    """A route only an admin key may call: its handler is given the key."""

    call: Callable[[web.Request, Services, ApiKey], Answer]
    access: ClassVar[Access] = "admin"


# Who may call a route, and its handler, typed to be given the key it needs
# (runtime.ingress.app checks the key before calling it).
Handler = Public | Keyed | Admin


@dataclass(frozen=True)
class Route:
    """One operation: served by the app and described in the OpenAPI document."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    # Request body type, and response body type per status (None: no body; a
    # tuple: one of them; a string: a media type, not JSON).
    body: Any = None
    replies: Mapping[int, Any] = field(default_factory=dict)
    # Problems this route answers besides those every route may (the OpenAPI
    # document's list): status -> when.
    errors: Mapping[int, str] = field(default_factory=dict)
    # Query parameters: name -> (type, description).
    query: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    # Request headers the route reads (besides Authorization): name -> description.
    headers: Mapping[str, str] = field(default_factory=dict)
    # Body media types besides JSON.
    also_accepts: tuple[str, ...] = ()

    @property
    def access(self) -> Access:
        return self.handler.access


_encoder = msgspec.json.Encoder()


def reply(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(body), content_type=JSON)


def media_type(request: web.Request) -> str:
    raw = request.headers.get(hdrs.CONTENT_TYPE)
    if raw == JSON:
        return JSON  # as nearly every client sends it: no parsing
    return request.content_type.split(";")[0].strip().lower()


async def read_json(request: web.Request, kind: type[T]) -> T:
    """The body as `kind`: 415 unless JSON, 422 with the field path if invalid."""
    if media_type(request) != JSON:
        raise Problem(415, "Unsupported media type", f"send {JSON}")
    try:
        return msgspec.json.decode(await request.read(), type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation(exc) from None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Problem(422, "Invalid request", f"query {name} must be an integer {low}-{high}")
    return value
