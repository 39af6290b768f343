"""What the ingress tells about each request: a SERVER span (unless its route is
excluded: probes, scrapes and the dashboard's polling would bury the traces that
matter) and, when asked for, an access log line.

Middlewares, added only when in use: each layer costs every request a coroutine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from aiohttp.typedefs import Middleware

from sluice.runtime.ingress.auth import ApiKey
from sluice.runtime.telemetry import tracing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The key a request was made with, once checked (runtime.ingress.app).
CALLER = web.RequestKey("sluice_caller", ApiKey)

access = logging.getLogger("sluice.access")


def route_of(request: web.Request) -> str:
    """The route template (`/v1/jobs/{id}`): bounded, unlike the paths."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def traced(exclude: Collection[str]) -> Middleware:
    """A SERVER span per request, parent of what the request does (the publish span),
    except for routes in `exclude`: templates, alone or after a method (`GET /v1/jobs`).

    Our own middleware rather than OpenTelemetry's aiohttp-server one, which works
    only after instrumenting every aiohttp Application of the process.
    """
    skipped = frozenset(exclude)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        if route in skipped or f"{request.method} {route}" in skipped:
            return await handler(request)
        url = request.url
        with tracing.serving(request.method, route, request.headers, path=request.path,
                             scheme=request.scheme, address=url.host or "",
                             port=url.port) as span:  # fmt: skip
            response = await handler(request)
            if span is not None:
                tracing.answered(span, response.status)
            return response

    return middleware


@web.middleware
async def logged(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per request: method, path, status, duration, and the workspace when
    the key names one (or the path does)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        ms = round((time.perf_counter() - started) * 1000, 3)
        fields: dict[str, object] = {
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": ms,
        }
        workspace = request.match_info.get("workspace") or _only_workspace(request.get(CALLER))
        if workspace:
            fields["workspace"] = workspace
        access.info("%s %s %d %.1f ms", request.method, request.path, status, ms,
                    extra={"fields": fields})  # fmt: skip


def _only_workspace(key: ApiKey | None) -> str:
    return key.workspaces[0] if key is not None and len(key.workspaces) == 1 else ""
