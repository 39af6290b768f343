"""`sluice worker | dev`: the only place that reads the environment and starts the loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import uvloop

from runtime import logs, settings
from runtime.client import Client, Event
from runtime.declare import Function
from runtime.errors import SluiceError
from runtime.health import RedisHealth, report_server
from runtime.lifecycle import stop_on_signals
from runtime.registry import Registry, load
from runtime.worker import WorkerHost
from streams.connection import connect
from streams.errors import RedisUnavailable

log = logging.getLogger("sluice")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sluice", description="Handlers on Redis Streams.")
    roles = parser.add_subparsers(dest="role", required=True)
    worker = roles.add_parser("worker", help="run handler functions")
    worker.add_argument("--functions", help="comma-separated function names (default: all)")
    roles.add_parser("dev", help="all roles in one process, readable logs, for local use")
    args = parser.parse_args(argv)

    try:
        overrides: dict[str, object] = {}
        if args.role == "dev" and "SLUICE_LOG_FORMAT" not in os.environ:
            overrides["log_format"] = "text"
        config = settings.from_env(os.environ, **overrides)
        registry = load(config.functions)
        functions = (
            registry.select(n.strip() for n in args.functions.split(",") if n.strip())
            if getattr(args, "functions", None)
            else list(registry)
        )
    except SluiceError as exc:
        sys.exit(f"sluice: {exc}")
    logs.configure(config.log_format, config.log_level)
    uvloop.run(_serve(config, registry, functions, demo=args.role == "dev" and config.demo))


async def _serve(
    config: settings.Settings,
    registry: Registry,
    functions: Sequence[Function[Any]],
    *,
    demo: bool,
) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    client = connect(config.redis)
    health = RedisHealth(config.redis.redacted_url())
    host = WorkerHost(client, functions, config, health)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(host.run(stop))
            group.create_task(report_server(client, health.url, stop))
            if demo:
                group.create_task(_publish_examples(Client(client, registry)))
    finally:
        await client.aclose()


async def _publish_examples(client: Client) -> None:
    """Publish each function's declared example a few times, so a newcomer sees jobs flow."""
    for fn in client.registry:
        if fn.example is None:
            continue
        events = [Event(workspace=f"demo-{n}", data=fn.example) for n in range(3)]
        try:
            receipts = await client.publish_many(fn.name, events)
        except RedisUnavailable as exc:
            log.warning("demo: could not publish to %s: %s", fn.name, exc)
            continue
        log.info("demo: published %s to %s", ", ".join(r.id for r in receipts), fn.name)
