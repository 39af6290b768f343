"""The ceiling the ingress is measured against: an aiohttp app on uvloop that
reads the body and answers 202, nothing else. `python -m bench.ceiling PORT`."""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=202, body=b'{"id":"x"}', content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/events/{topic}", accept)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
