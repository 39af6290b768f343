"""The aiohttp application: the route table served, keys checked, errors answered
as problem details, and the OpenAPI document built from the same table."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

import msgspec
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from sluice.runtime.errors import (
    InvalidCursor,
    InvalidEndpoint,
    InvalidPayload,
    InvalidPriority,
    InvalidSchedule,
    JobNotFound,
    PayloadTooLarge,
    TooManyEndpoints,
    UnknownFunction,
    WrongJobState,
)
from sluice.runtime.ingress import (
    admin,
    dashboard,
    health,
    jobs,
    observe,
    prometheus,
    publish,
    schedules,
    seed,
    webhooks,
)
from sluice.runtime.ingress.openapi import document
from sluice.runtime.ingress.problems import Problem, invalid
from sluice.runtime.ingress.routes import (
    Admin,
    Answer,
    Handler,
    Keyed,
    Public,
    Route,
    Services,
    reply,
)
from sluice.runtime.telemetry import tracing
from sluice.streams.errors import InvalidName, RedisFull, RedisUnavailable

log = logging.getLogger(__name__)

ROUTES: list[Route] = [
    *publish.ROUTES,
    *jobs.ROUTES,
    *admin.ROUTES,
    *schedules.ROUTES,
    *health.ROUTES,
    *dashboard.ROUTES,
    *prometheus.ROUTES,
    *webhooks.ROUTES,
    *seed.ROUTES,
]

SERVICES = web.AppKey("services", Services)

# Seconds a client is told to wait after a 503.
RETRY_AFTER_S = 2


def problem_for(request: web.Request, exc: Exception) -> web.Response:
    """Every error as application/problem+json; no 500 for anything a client sends."""
    match exc:
        case Problem():
            return exc.response()
        case web.HTTPRequestEntityTooLarge():
            return Problem(413, "Body too large", exc.text or "").response()
        case web.RequestPayloadError() | HttpProcessingError():
            # The parser refused the body as a route read it (what it refuses
            # before a route runs is runtime.ingress.server's); its message may
            # quote the bytes. aiohttp's C parser raises the first, its Python one
            # the parser's own error.
            return Problem(400, "Malformed body", "the body does not match its "
                           "Transfer-Encoding or Content-Encoding").response()  # fmt: skip
        case web.HTTPException() if exc.status >= 400:
            return Problem(exc.status, exc.reason, "").response()
        case InvalidSchedule() if exc.field:
            return invalid(f"$.{exc.field}", str(exc)).response()
        case (
            InvalidName()
            | InvalidPayload()
            | InvalidSchedule()
            | InvalidPriority()
            | InvalidEndpoint()
        ):
            return invalid("$", str(exc)).response()
        case InvalidCursor():
            return Problem(422, "Invalid request", str(exc)).response()
        case PayloadTooLarge():
            return Problem(413, "Body too large", str(exc)).response()
        case UnknownFunction() | JobNotFound():
            return Problem(404, "Not found", str(exc)).response()
        case WrongJobState() | TooManyEndpoints():
            return Problem(409, "Conflict", str(exc)).response()
        case RedisFull():
            log.warning("%s %s: answered 503: %s", request.method, request.path, exc)
            return Problem(503, "Unavailable", "Redis is full (maxmemory); nothing was accepted",
                           retry_after_s=RETRY_AFTER_S).response()  # fmt: skip
        case RedisUnavailable():
            log.warning("%s %s: answered 503: %s", request.method, request.path, exc)
            return Problem(503, "Unavailable", "Redis is unavailable; nothing was accepted",
                           retry_after_s=RETRY_AFTER_S).response()  # fmt: skip
    log.error("%s %s failed", request.method, request.path, exc_info=exc)
    return Problem(500, "Internal error", "").response()


def _checked(handler: Handler) -> Callable[[web.Request, Services], Answer]:
    """The handler behind the key check its route needs, given the key it was typed for.

    Plain functions, not coroutines: they return the handler's own awaitable, so
    no coroutine frame is added to a request.
    """
    match handler:
        case Public(call):
            return call
        case Keyed(keyed_call):

            def keyed(request: web.Request, services: Services) -> Answer:
                key = services.keys.identify(request.headers.get(hdrs.AUTHORIZATION))
                request[observe.CALLER] = key
                return keyed_call(request, services, key)

            return keyed
        case Admin(admin_call):

            def admin(request: web.Request, services: Services) -> Answer:
                key = services.keys.identify(request.headers.get(hdrs.AUTHORIZATION))
                request[observe.CALLER] = key
                if not key.admin:
                    raise Problem(403, "Forbidden", "this route needs an admin key")
                return admin_call(request, services, key)

            return admin


def _serve(route: Route) -> Callable[[web.Request], Answer]:
    """A route's handler behind its key check, its errors answered as problems.

    In the handler rather than in a middleware: each middleware layer is one more
    coroutine per request (aiohttp adds a second one with the first middleware).
    """
    call = _checked(route.handler)

    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            return await call(request, request.app[SERVICES])
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # a redirect is an answer, not an error
            return problem_for(request, exc)
        except Exception as exc:
            return problem_for(request, exc)

    return serve


async def unmatched(request: web.Request) -> web.StreamResponse:
    """Any path no route serves: 405 with Allow if another method would do, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        response = Problem(405, "Method not allowed", f"{request.method} is not served here")
        answer = response.response()
        answer.headers["Allow"] = ", ".join(sorted(allowed))
        return answer
    return Problem(404, "Not found", f"no route for {request.path}").response()


# Any path, a decoded newline (%0A) in it too: "." would stop there.
UNMATCHED = r"/{path:[\s\S]*}"


def build_app(
    services: Services,
    max_body_bytes: int,
    routes: Sequence[Route] = ROUTES,
    *,
    trace_exclude: Collection[str] = (),
    access_log: bool = False,
) -> web.Application:
    """`trace_exclude`: routes served without a span (runtime.ingress.observe);
    `access_log`: a log line per request."""
    # Each middleware only when in use: each layer costs every request.
    middlewares: list[Middleware] = []
    if access_log:
        middlewares.append(observe.logged)  # outermost: it times the span too
    if tracing.enabled():
        middlewares.append(observe.traced(trace_exclude))
    app = web.Application(middlewares=middlewares, client_max_size=max_body_bytes)
    app[SERVICES] = services
    for route in routes:
        app.router.add_route(route.method, route.path, _serve(route))
    spec = msgspec.json.encode(document(routes, services.registry))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)

    async def root(request: web.Request) -> web.StreamResponse:
        """The site's address, typed into a browser, leads to the dashboard."""
        raise web.HTTPFound("/admin")

    app.router.add_get("/", root)
    # The docs page's scripts and styles: files, not API routes (not in the document).
    app.router.add_get("/docs/assets/{name}", dashboard.asset)
    # Last: what no route above took.
    app.router.add_route("*", UNMATCHED, unmatched)

    async def on_startup(app: web.Application) -> None:
        services.coalescer.start()

    async def on_cleanup(app: web.Application) -> None:
        await services.coalescer.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


__all__ = ["ROUTES", "build_app", "reply"]
