"""The dashboard at /admin and the interactive API docs at /docs: static pages
(dashboard.html, docs.html) whose scripts call the JSON API with a key the user
enters, kept in that browser tab only. The pages hold no data, so they need no
key to load; the docs page builds its forms from /openapi.json."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from runtime.ingress.routes import Public, Route, Services

DASHBOARD = Path(__file__).with_name("dashboard.html").read_bytes()
DOCS = Path(__file__).with_name("docs.html").read_bytes()


async def dashboard(request: web.Request, services: Services) -> web.Response:
    return _page(DASHBOARD)


async def docs(request: web.Request, services: Services) -> web.Response:
    return _page(DOCS)


def _page(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/html",
        headers={
            # Its own script and styles only; it talks to this origin alone.
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src 'self' data:",
            "X-Frame-Options": "DENY",
        },
    )


ROUTES = [
    Route("GET", "/admin", Public(dashboard), "The dashboard (enter an admin key in the page)",
          "dashboard", replies={200: "text/html"}),
    Route("GET", "/docs", Public(docs), "Interactive API docs, built from /openapi.json",
          "dashboard", replies={200: "text/html"}),
]  # fmt: skip
