"""The HTTP ingress: publish events, manage jobs, read metrics (aiohttp).

`listen` binds it, `serve` runs it until stopped; `services` builds what its routes use.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from aiohttp import web

from sluice.runtime.client.deadletters import DeadLetters
from sluice.runtime.client.jobs import Jobs
from sluice.runtime.client.limits import Limits
from sluice.runtime.client.metrics import Metrics
from sluice.runtime.client.pauses import Pauses
from sluice.runtime.client.publish import Client
from sluice.runtime.errors import CannotListen
from sluice.runtime.health import RedisHealth
from sluice.runtime.ingress.app import build_app
from sluice.runtime.ingress.auth import KeyRing
from sluice.runtime.ingress.coalesce import Coalescer
from sluice.runtime.ingress.prometheus import Exposition
from sluice.runtime.ingress.routes import Services
from sluice.runtime.ingress.server import IngressRunner
from sluice.runtime.registry import Registry
from sluice.runtime.settings import Settings, use_settings
from sluice.streams.connection import Redis
from sluice.streams.errors import ConfigurationError

log = logging.getLogger(__name__)


def load_keys(config: Settings) -> KeyRing:
    """The configured API keys: SLUICE_API_KEYS_FILE or SLUICE_API_KEYS, not both."""
    if config.api_keys_file and config.api_keys:
        raise ConfigurationError("set SLUICE_API_KEYS_FILE or SLUICE_API_KEYS, not both")
    if config.api_keys_file:
        return KeyRing.load(Path(config.api_keys_file))
    if config.api_keys:
        return KeyRing.parse(config.api_keys, "SLUICE_API_KEYS")
    return KeyRing([])


def services(
    redis: Redis, registry: Registry, keys: KeyRing, health: RedisHealth, write_timeout_s: float
) -> Services:
    client = Client(redis, registry)
    return Services(
        redis=redis,
        registry=registry,
        client=client,
        jobs=Jobs(redis, registry),
        dead=DeadLetters(redis, registry),
        metrics=Metrics(redis, registry),
        limits=Limits(redis, registry),
        pauses=Pauses(redis, registry),
        keys=keys,
        coalescer=Coalescer(client, write_timeout_s),
        health=health,
        exposition=Exposition(),
    )


async def listen(config: Settings, built: Services) -> web.AppRunner:
    """The ingress bound to the configured address and accepting requests.

    Before any other role starts: an address in use is then one clear error,
    not a process that runs on without HTTP.
    """
    # The request tasks inherit the context the listening socket was opened in:
    # input types that read the deployment's settings as they validate
    # (runtime.phones) find them.
    use_settings(config)
    app = build_app(built, config.ingress_max_body_bytes, trace_exclude=config.trace_exclude,
                    access_log=config.access_log)  # fmt: skip
    runner = IngressRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    address = f"{config.ingress_host}:{config.ingress_port}"
    try:
        await web.TCPSite(runner, config.ingress_host, config.ingress_port).start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise CannotListen(f"cannot listen on {address}: {reason}") from None
    shown = f"http://{_reachable(config.ingress_host)}:{config.ingress_port}"
    log.info("ingress on http://%s: dashboard %s/admin, API docs %s/docs", address, shown, shown)
    return runner


def _reachable(host: str) -> str:
    """A host to browse to: a wildcard address is reachable on loopback."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


async def serve(runner: web.AppRunner, stop: asyncio.Event) -> None:
    """Serve the listening ingress until `stop` is set."""
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
