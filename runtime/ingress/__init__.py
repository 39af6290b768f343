"""The HTTP ingress: publish events, manage jobs, read metrics (aiohttp).

`serve` runs it until stopped; `services` builds what its routes use.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from runtime.client.deadletters import DeadLetters
from runtime.client.jobs import Jobs
from runtime.client.limits import Limits
from runtime.client.metrics import Metrics
from runtime.client.pauses import Pauses
from runtime.client.publish import Client
from runtime.health import RedisHealth
from runtime.ingress.app import RUNNER_OPTIONS, build_app
from runtime.ingress.auth import KeyRing
from runtime.ingress.coalesce import Coalescer
from runtime.ingress.prometheus import Exposition
from runtime.ingress.routes import Services
from runtime.registry import Registry
from runtime.settings import Settings, use_settings
from streams.connection import Redis
from streams.errors import ConfigurationError

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


async def serve(config: Settings, built: Services, stop: asyncio.Event) -> None:
    """Serve HTTP on the configured address until `stop` is set."""
    # The request tasks inherit this task's context: input types that read the
    # deployment's settings as they validate (runtime.phones) find them.
    use_settings(config)
    app = build_app(built, config.ingress_max_body_bytes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, config.ingress_host, config.ingress_port)
    await site.start()
    log.info("ingress on http://%s:%d", config.ingress_host, config.ingress_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
