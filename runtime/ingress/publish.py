"""Publishing over HTTP: `POST /v1/events/{topic}` (one event, an array, or NDJSON).

Events are decoded straight into the topic's input type (msgspec), so a bad
field is answered 422 with its path before anything is written, and the answer
(202, or 200 when every job existed) comes only after Redis confirmed the write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import msgspec
from aiohttp import web
from multidict import istr

from sluice.runtime.client.publish import Prepared, Publishable, Receipt
from sluice.runtime.errors import InvalidSchedule, SluiceError, UnknownFunction
from sluice.runtime.ingress.auth import ApiKey, require_workspace
from sluice.runtime.ingress.bodies import (
    EventBody,
    Published,
    PublishedMany,
    events_of,
)
from sluice.runtime.ingress.problems import Problem, from_validation, invalid, not_found
from sluice.runtime.ingress.routes import (
    JSON,
    NDJSON,
    Keyed,
    Route,
    Services,
    media_type,
    reply,
)
from sluice.runtime.phones import in_workspace, regional
from sluice.runtime.telemetry import tracing

# An istr: looked up in every request's headers without case-folding it first.
IDEMPOTENCY_HEADER = istr("Idempotency-Key")
IDEMPOTENCY = {
    str(IDEMPOTENCY_HEADER): "the job id of an event that names none (`<key>:<index>` in an"
    " array): the same key is never a second job of the workspace"
}


Decoders = tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]


def _decoders(services: Services, topic: str) -> Decoders:
    """The decoders of one event and of an array of them for `topic`, made once per
    topic and app (they depend on the app's registry)."""
    found: Decoders | None = services.decoders.get(topic)
    if found is None:
        try:
            (fn, *_) = services.registry.route(topic)
        except UnknownFunction:
            raise not_found(f"no function handles topic {topic!r}") from None
        one, many = events_of(fn.input)
        found = msgspec.json.Decoder(one), msgspec.json.Decoder(many)
        services.decoders[topic] = found
    return found


class _Workspace(msgspec.Struct):
    """An event read for its workspace alone, before its data is decoded."""

    workspace: str = ""


_WORKSPACE = msgspec.json.Decoder(_Workspace)
_EVENTS = msgspec.json.Decoder(list[msgspec.Raw])


def _in_its_workspace(one: msgspec.json.Decoder[Any], event: bytes, at: str) -> EventBody[Any]:
    """Decode one event with its data's phone numbers read in its workspace's region
    (runtime.phones): where some workspace has a region of its own, the workspace
    must be known before the data is decoded, so it is read first."""
    try:
        try:
            workspace = _WORKSPACE.decode(event).workspace
        except (msgspec.ValidationError, msgspec.DecodeError):
            workspace = ""  # the full decode below says what is wrong
        with in_workspace(workspace):
            decoded: EventBody[Any] = one.decode(event)
            return decoded
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation(exc, at) from None


def _identified(body: EventBody[Any], idempotency: str | None, index: int | None) -> EventBody[Any]:
    """`body`, with the Idempotency-Key header as its id when it names none."""
    if body.id is not None or not idempotency:
        return body
    return msgspec.structs.replace(
        body, id=idempotency if index is None else f"{idempotency}:{index}"
    )


def submit(
    services: Services, key: ApiKey, topic: str, events: Sequence[Publishable]
) -> Awaitable[list[Receipt]]:
    """The receipts of `events`, once written; raises at once if any is refused.
    Returns the coalescer's future itself while tracing is off: no coroutine
    frame of its own for a request to resume through."""
    for event in events:
        require_workspace(key, event.workspace)
    if not tracing.enabled():
        # No context manager at all while tracing is off: it showed in a request's profile.
        return services.coalescer.publish(_prepare(services, topic, events, None))
    return _traced(services, topic, events)


async def _traced(services: Services, topic: str, events: Sequence[Publishable]) -> list[Receipt]:
    with tracing.publishing(topic, len(events)) as trace:
        return await services.coalescer.publish(_prepare(services, topic, events, trace))


def _prepare(
    services: Services, topic: str, events: Sequence[Publishable], trace: dict[str, str] | None
) -> Prepared:
    try:
        return services.client.prepare(topic, events, trace)
    except SluiceError as exc:
        # A schedule's error names its field ("run_at.zone"); the message says which event.
        field = exc.field if isinstance(exc, InvalidSchedule) and len(events) == 1 else ""
        path = f"$.{field}" if field else "$"
        raise invalid(path, str(exc), "an event cannot be published") from None


async def publish_events(
    request: web.Request, services: Services, key: ApiKey
) -> web.StreamResponse:
    topic = request.match_info["topic"]
    one, many = _decoders(services, topic)
    kind = media_type(request)
    idempotency = request.headers.get(IDEMPOTENCY_HEADER)
    data = await request.read()
    single = False
    try:
        if kind == JSON and regional():
            single = not data.lstrip().startswith(b"[")
            events = [msgspec.Raw(data)] if single else _EVENTS.decode(data)
            bodies = [_in_its_workspace(one, e, "$" if single else f"$[{n}]")
                      for n, e in enumerate(events)]  # fmt: skip
        elif kind == JSON:
            decoded = many.decode(data)
            single = isinstance(decoded, EventBody)
            bodies = [decoded] if single else decoded
        elif kind == NDJSON:
            bodies = [_in_its_workspace(one, line, f"$[{n}]")
                      for n, line in enumerate(data.splitlines()) if line.strip()]  # fmt: skip
        else:
            raise Problem(415, "Unsupported media type", f"send {JSON} or {NDJSON}")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation(exc) from None
    if not bodies:
        raise invalid("$", "no events")
    if idempotency:
        bodies = [_identified(b, idempotency, None if single else i) for i, b in enumerate(bodies)]
    receipts = await submit(services, key, topic, bodies)
    if single:
        (receipt,) = receipts
        return reply(published(receipt), 200 if receipt.duplicate else 202)
    status = 200 if all(r.duplicate for r in receipts) else 202
    return reply(PublishedMany([published(r) for r in receipts]), status)


def published(receipt: Receipt) -> Published:
    """A receipt as the API shows it: `due` in UTC with milliseconds, "Z"-suffixed."""
    due = receipt.due
    shown = None if due is None else due.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Published(receipt.id, receipt.duplicate, shown)


ROUTES = [
    Route(
        "POST",
        "/v1/events/{topic}",
        Keyed(publish_events),
        "Publish one event, an array of events, or NDJSON lines",
        "events",
        body=EventBody[Any] | list[EventBody[Any]],
        replies={202: (Published, PublishedMany), 200: (Published, PublishedMany)},
        also_accepts=(NDJSON,),
        headers=IDEMPOTENCY,
    ),
]
