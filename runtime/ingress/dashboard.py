"""The dashboard at /admin and the interactive API docs at /docs: static pages
(dashboard.html, docs.html) whose scripts call the JSON API with a key the user
enters, kept in that browser tab only. The pages hold no data, so they need no
key to load.

The docs page is Swagger UI (schemas, examples, "try it out") on /openapi.json,
its assets served here from the swagger-ui-bundle-v2 package: no CDN, so the
docs work on a closed network and load no third-party script.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from sluice.runtime.ingress.problems import Problem
from sluice.runtime.ingress.routes import Public, Route, Services

DASHBOARD = Path(__file__).with_name("dashboard.html").read_bytes()
DOCS = Path(__file__).with_name("docs.html").read_bytes()
# The files /docs/assets/ serves: a fixed list, so no name can reach another file.
ASSETS = {
    "swagger-ui-bundle.js": (swagger_ui_path / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (swagger_ui_path / "swagger-ui.css", "text/css"),
    "docs.js": (Path(__file__).with_name("docs.js"), "text/javascript"),
}


async def dashboard(request: web.Request, services: Services) -> web.Response:
    return _page(DASHBOARD)


async def docs(request: web.Request, services: Services) -> web.Response:
    # Swagger UI's scripts are files of this origin; it styles elements inline.
    return _page(DOCS, "script-src 'self'; style-src 'self' 'unsafe-inline'")


async def asset(request: web.Request) -> web.StreamResponse:
    """A file of the docs page, read when asked (the bundle is 1.5 MB: not held in memory)."""
    found = ASSETS.get(request.match_info["name"])
    if found is None:
        return Problem(404, "Not found", f"no route for {request.path}").response()
    path, media = found
    return web.FileResponse(
        Path(str(path)), headers={"Content-Type": media, "Cache-Control": "public, max-age=3600"}
    )


def _page(
    body: bytes, scripts: str = "script-src 'unsafe-inline'; style-src 'unsafe-inline'"
) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/html",
        headers={
            # Its own scripts and styles only; it talks to this origin alone.
            "Content-Security-Policy": f"default-src 'self'; {scripts}; img-src 'self' data:",
            "X-Frame-Options": "DENY",
        },
    )


ROUTES = [
    Route("GET", "/admin", Public(dashboard), "The dashboard (enter an admin key in the page)",
          "dashboard", replies={200: "text/html"}),
    Route("GET", "/docs", Public(docs), "Interactive API docs, built from /openapi.json",
          "dashboard", replies={200: "text/html"}),
]  # fmt: skip
