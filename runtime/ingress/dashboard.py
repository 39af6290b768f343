"""The dashboard at /admin: one static page (dashboard.html) whose script reads the
JSON API with an admin key the user enters, kept in that browser tab only. The
page itself holds no data, so it needs no key to load."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from runtime.ingress.auth import ApiKey
from runtime.ingress.routes import Route, Services

PAGE = (Path(__file__).with_name("dashboard.html")).read_bytes()


async def dashboard(request: web.Request, services: Services, key: ApiKey | None) -> web.Response:
    return web.Response(
        body=PAGE,
        content_type="text/html",
        headers={
            # Its own script and styles only; it talks to this origin alone.
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src 'self' data:",
            "X-Frame-Options": "DENY",
        },
    )


ROUTES = [
    Route("GET", "/admin", dashboard, "The dashboard (enter an admin key in the page)",
          "dashboard", access="public", replies={200: "text/html"}),
]  # fmt: skip
