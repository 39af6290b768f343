"""`sluice worker | scheduler | dev`: the only place that reads the environment and runs a loop."""

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
from runtime.scheduler import Scheduler
from runtime.worker import WorkerHost
from streams.connection import connect
from streams.errors import RedisUnavailable

log = logging.getLogger("sluice")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sluice", description="Handlers on Redis Streams.")
    roles = parser.add_subparsers(dest="role", required=True)
    worker = roles.add_parser("worker", help="run handler functions")
    worker.add_argument("--functions", help="comma-separated function names (default: all)")
    worker.add_argument(
        "--with-scheduler",
        action="store_true",
        help="also promote due delayed jobs (any number of schedulers may run)",
    )
    scheduler = roles.add_parser("scheduler", help="promote delayed jobs when they fall due")
    scheduler.add_argument("--functions", help="comma-separated function names (default: all)")
    roles.add_parser("dev", help="all roles in one process, readable logs, for local use")
    args = parser.parse_args(argv)
    consume = args.role in ("worker", "dev")
    schedule = args.role in ("scheduler", "dev") or getattr(args, "with_scheduler", False)

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
    demo = args.role == "dev" and config.demo
    uvloop.run(_serve(config, registry, functions, consume=consume, schedule=schedule, demo=demo))


async def _serve(
    config: settings.Settings,
    registry: Registry,
    functions: Sequence[Function[Any]],
    *,
    consume: bool,
    schedule: bool,
    demo: bool,
) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    client = connect(config.redis)
    health = RedisHealth(config.redis.redacted_url())
    try:
        async with asyncio.TaskGroup() as group:
            if consume:
                group.create_task(WorkerHost(client, functions, config, health).run(stop))
            if schedule:
                scheduler = Scheduler(client, functions, health, config.scheduler_recheck_s)
                group.create_task(scheduler.run(stop))
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
        # One for later, so the scheduler has something to promote.
        events.append(Event(workspace="demo-later", data=fn.example, delay_ms=5_000))
        try:
            receipts = await client.publish_many(fn.name, events)
        except RedisUnavailable as exc:
            log.warning("demo: could not publish to %s: %s", fn.name, exc)
            continue
        log.info("demo: published %s to %s", ", ".join(r.id for r in receipts), fn.name)
