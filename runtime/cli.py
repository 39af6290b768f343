"""`sluice worker | scheduler | ingress | dev | check | keys create |
schedules list|add|remove | openapi`: the only place that reads the environment
and runs a loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import textwrap
import threading
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from sluice.runtime import gc_tuning, settings
from sluice.runtime.client.current import worker_context
from sluice.runtime.client.demo import publish_demo
from sluice.runtime.client.publish import Client
from sluice.runtime.client.repeats import Repeats
from sluice.runtime.declare import Function
from sluice.runtime.errors import CannotListen, SluiceError
from sluice.runtime.health import REFUSED_TRIES, RedisHealth, report_server
from sluice.runtime.ingress import listen, load_keys, services
from sluice.runtime.ingress import serve as serve_http
from sluice.runtime.ingress.app import ROUTES
from sluice.runtime.ingress.auth import KeyRing, new_key
from sluice.runtime.ingress.openapi import document
from sluice.runtime.ingress.views import schedule_view
from sluice.runtime.lifecycle import stop_on_signals
from sluice.runtime.probe import (
    LIVE_PATH,
    READY_PATH,
    Address,
    check,
    open_port,
    processes_app,
    serve_probe,
)
from sluice.runtime.registry import Registry, load
from sluice.runtime.scheduler.host import Scheduler
from sluice.runtime.supervisor import Supervisor, install_signals
from sluice.runtime.telemetry import export, logs
from sluice.runtime.worker.host import WorkerHost
from sluice.streams.connection import connect
from sluice.streams.errors import RedisRefused
from sluice.streams.repeats import Schedule

log = logging.getLogger("sluice")


def main(argv: list[str] | None = None) -> None:
    # The `sluice` script's first line run (python -m sluice sets it before its
    # imports): stopped while it starts, a process holds nothing yet and exits 0,
    # until the running roles take SIGTERM over (runtime.lifecycle). Only a
    # process's main thread may set it: `main` called from another (a test, a
    # tool) leaves signals to its host.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parser = argparse.ArgumentParser(prog="sluice", description="Handlers on Redis Streams.")
    parser.add_argument("--version", action="version", version=f"sluice {version('sluice')}")
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="the deployment's functions, imported from the working directory "
        "(default: SLUICE_FUNCTIONS, functions:FUNCTIONS)",
    )
    roles = parser.add_subparsers(dest="role", required=True)
    worker = roles.add_parser("worker", help="run handler functions", **_reads("worker"))
    worker.add_argument("--functions", help="comma-separated function names (default: all)")
    worker.add_argument(
        "--no-scheduler",
        dest="scheduler",
        action="store_false",
        default=None,
        help="leave due jobs to dedicated schedulers (default: SLUICE_WORKER_SCHEDULER, true)",
    )
    worker.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes under a supervisor that restarts one that dies "
        "(default 1: this process is the worker)",
    )
    # Promoting is what a worker does by default now; the old flag still says so.
    worker.add_argument(
        "--with-scheduler", dest="scheduler", action="store_true", help=argparse.SUPPRESS
    )
    # A worker process under a supervisor answers the probes here, for the
    # supervisor to ask (it serves SLUICE_HEALTH_PORT for all of its processes).
    worker.add_argument("--health-socket", type=Path, help=argparse.SUPPRESS)
    scheduler = roles.add_parser(
        "scheduler", help="promote delayed jobs when they fall due", **_reads("scheduler")
    )
    scheduler.add_argument("--functions", help="comma-separated function names (default: all)")
    roles.add_parser("ingress", help="serve the HTTP API", **_reads("ingress"))
    roles.add_parser(
        "dev", help="all roles in one process, readable logs, for local use", **_reads("dev")
    )
    probe = roles.add_parser(
        "check",
        help="exit 0 if the worker or scheduler beside answers ready on its health port, "
        "else 1 (a Kubernetes exec probe)",
        **_reads("check"),
    )
    probe.add_argument(
        "--live", action="store_true", help="ask /healthz (the loop turns) instead of /readyz"
    )
    keys = roles.add_parser("keys", help="API keys for the ingress")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser(
        "create", help="print a new key once, and its stored form", **_reads("keys")
    )
    create.add_argument("--name", required=True, help="who or what uses it")
    create.add_argument("--workspace", action="append", default=[], help="repeat for several")
    create.add_argument("--admin", action="store_true", help="every workspace and admin routes")
    _schedule_parsers(roles)
    roles.add_parser(
        "openapi",
        help="print the ingress's OpenAPI document (needs no Redis)",
        **_reads("openapi"),
    )
    args = parser.parse_args(argv)
    if args.role == "openapi":
        _openapi(args.app)
        return
    if args.role == "keys":
        _create_key(args.name, tuple(args.workspace), args.admin)
        return
    if args.role == "schedules":
        _schedules(args)
        return
    if args.role == "check":
        _check(args.live)
        return
    consume = args.role in ("worker", "dev")
    ingress = args.role in ("ingress", "dev")
    try:
        overrides: dict[str, object] = {}
        if args.role == "dev" and "SLUICE_LOG_FORMAT" not in os.environ:
            overrides["log_format"] = "text"
        if args.role == "dev" and "SLUICE_INGRESS_HOST" not in os.environ:
            overrides["ingress_host"] = "127.0.0.1"
        if args.app:
            overrides["functions"] = args.app
        environ = dict(os.environ)
        if args.role == "dev":
            # Locally, messages are logged, not sent, and that needs no warning.
            environ.setdefault("SLUICE_SMS_PROVIDER", "log")
            environ.setdefault("SLUICE_WHATSAPP_PROVIDER", "log")
            environ.setdefault("SLUICE_EMAIL_PROVIDER", "log")
        config = settings.from_env(environ, **overrides)
        registry = load(config.functions).with_rates(config.rates)
        keyring = load_keys(config) if ingress else KeyRing([])
        dev_key = None
        if args.role == "dev" and not keyring.by_hash:
            dev_key, keyring = _dev_key()
        functions = (
            registry.select(n.strip() for n in args.functions.split(",") if n.strip())
            if getattr(args, "functions", None)
            else list(registry)
        )
        if getattr(args, "processes", 1) < 1:
            raise SluiceError("--processes must be 1 or more")
    except SluiceError as exc:
        sys.exit(f"sluice: {exc}")
    logs.configure(config.log_format, config.log_level)
    schedule = args.role in ("scheduler", "dev") or (
        args.role == "worker"
        and (config.worker_scheduler if args.scheduler is None else args.scheduler)
    )
    if args.role == "worker" and args.processes > 1:
        sys.exit(_supervise(args, config, schedule))
    try:
        traced = export.configure(args.role, os.environ, config.trace_mode)
    except SluiceError as exc:
        sys.exit(f"sluice: {exc}")
    demo = args.role == "dev" and config.demo
    probe_at: Address | None = getattr(args, "health_socket", None)
    if probe_at is None and config.health_port:
        probe_at = ("0.0.0.0", config.health_port)
    try:
        uvloop.run(
            _serve(
                config,
                registry,
                functions,
                keyring if ingress else None,
                consume=consume,
                schedule=schedule,
                demo=demo,
                dev_key=dev_key,
                probe_at=probe_at,
            )
        )
    except (CannotListen, RedisRefused) as exc:
        sys.exit(f"sluice: {exc}")
    finally:
        for provider in traced:
            provider.shutdown()


async def _serve(
    config: settings.Settings,
    registry: Registry,
    functions: Sequence[Function[Any]],
    keyring: KeyRing | None,
    *,
    consume: bool,
    schedule: bool,
    demo: bool,
    dev_key: str | None,
    probe_at: Address | None,
) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    client = connect(config.redis)
    # Handlers and schedulers end on a refusal that persists; the ingress alone goes
    # on, answering 503 with the reason (as its /readyz does) until Redis lets it in.
    runs = consume or schedule
    health = RedisHealth(config.redis.redacted_url(), refused_tries=REFUSED_TRIES if runs else 0)
    gc_tuning.tune_collector()
    try:
        # The ingress binds first: a busy port stops the process before any role starts.
        runner = None
        if keyring is not None:
            built = services(client, registry, keyring, health, config.ingress_write_timeout_s)
            runner = await listen(config, built)
            if dev_key is not None:
                print(f"sluice dev: admin API key for this run: {dev_key}", file=sys.stderr)
        async with asyncio.TaskGroup() as group:
            if consume:
                # Its handlers publish with this connection to any of the deployment's
                # functions (runtime.current_client).
                group.create_task(
                    WorkerHost(client, functions, config, health).run(stop),
                    context=worker_context(Client(client, registry)),
                )
            if schedule:
                scheduler = Scheduler(client, functions, health, config.scheduler_recheck_s)
                group.create_task(scheduler.run(stop))
            if runner is not None:
                group.create_task(serve_http(runner, stop))
            group.create_task(report_server(client, health.url, stop))
            if runs and probe_at is not None:
                group.create_task(serve_probe(client, health, probe_at, stop))
            if runs:
                group.create_task(_stop_when_refused(health, stop))
            if demo:
                group.create_task(publish_demo(Client(client, registry)))
    finally:
        await client.aclose()
    if health.gave_up is not None:
        raise health.gave_up


async def _stop_when_refused(health: RedisHealth, stop: asyncio.Event) -> None:
    """Shut down once Redis has refused this process `REFUSED_TRIES` times in a row:
    waiting does not fix a password (the process then exits 1 with the reason)."""
    refused = asyncio.ensure_future(health.refusing())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([refused, stopping], return_when=asyncio.FIRST_COMPLETED)
    refused.cancel()
    stopping.cancel()
    stop.set()


def _check(live: bool) -> None:
    """`sluice check`: the health port's answer, exit 0 when ready (or live), else 1."""
    try:
        port = settings.from_env(dict(os.environ)).health_port
    except SluiceError as exc:
        sys.exit(f"sluice: {exc}")
    if not port:
        sys.exit("sluice: SLUICE_HEALTH_PORT is not set: the process has no health port to ask")
    ok, said = check(port, LIVE_PATH if live else READY_PATH)
    print(said)
    if not ok:
        sys.exit(1)


def _supervise(args: argparse.Namespace, config: settings.Settings, schedule: bool) -> int:
    """`sluice worker --processes N`: this process supervises N `sluice worker`s."""
    if not config.health_port:
        return _supervised(args, config, schedule, [])
    # Each process answers the probes on its own socket here, and the supervisor
    # serves the health port for them all: one probe per pod sees every process.
    with tempfile.TemporaryDirectory(prefix="sluice-health-") as folder:
        sockets = [Path(folder, f"{slot}.sock") for slot in range(args.processes)]
        try:
            return _supervised(args, config, schedule, sockets)
        except CannotListen as exc:
            sys.exit(f"sluice: {exc}")


def _supervised(
    args: argparse.Namespace, config: settings.Settings, schedule: bool, sockets: list[Path]
) -> int:
    def command(slot: int) -> list[str]:
        line = [sys.executable, "-m", "sluice"]
        if args.app:
            line += ["--app", args.app]
        line.append("worker")
        if args.functions:
            line += ["--functions", args.functions]
        # One scheduler for the machine is enough (any number promote each job
        # once); the first process runs it, the others only consume.
        line.append("--with-scheduler" if schedule and slot == 0 else "--no-scheduler")
        if sockets:
            line += ["--health-socket", str(sockets[slot])]
        return line

    def environ(slot: int) -> dict[str, str]:
        # A consumer name belongs to one process: each child gets its own.
        if not config.consumer:
            return dict(os.environ)
        return {**os.environ, "SLUICE_CONSUMER": f"{config.consumer}-{slot}"}

    async def run() -> int:
        stop = asyncio.Event()
        supervisor = Supervisor(command, args.processes, grace_s=config.grace_s, environ=environ)
        install_signals(supervisor, stop)
        if not sockets:
            return await supervisor.run(stop)
        # Bound before any process starts: a busy port stops the supervisor alone.
        app = processes_app(sockets, supervisor.pid)
        runner = await open_port(app, ("0.0.0.0", config.health_port))
        try:
            return await supervisor.run(stop)
        finally:
            await runner.cleanup()

    return uvloop.run(run())


def _create_key(name: str, workspaces: tuple[str, ...], admin: bool) -> None:
    try:
        key, stored = new_key(name, workspaces, admin)
    except SluiceError as exc:
        sys.exit(f"sluice: {exc}")
    print(f"key (shown once, keep it secret): {key}")
    print("add to the API keys file (a JSON list):")
    print(msgspec.json.encode(stored).decode())


def _openapi(app: str | None) -> None:
    """`sluice openapi`: what the ingress serves at /openapi.json for these functions,
    without Redis, so clients' types (clients/node) are generated from a checkout."""
    try:
        config = settings.from_env(dict(os.environ), **({"functions": app} if app else {}))
        registry = load(config.functions)
    except SluiceError as exc:
        sys.exit(f"sluice: {exc}")
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document(ROUTES, registry))))
    sys.stdout.buffer.write(b"\n")


def _reads(command: str) -> dict[str, Any]:
    """A subcommand's --help ends with the environment variables it reads."""
    names = settings.read_by(command)
    if not names:
        return {"epilog": "reads no settings from the environment"}
    listed = textwrap.fill(", ".join(names), 78, initial_indent="  ", subsequent_indent="  ")
    return {
        "epilog": f"settings it reads (environment variables; README.md says what each means):\n"
        f"{listed}",
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def _schedule_parsers(roles: Any) -> None:
    schedules = roles.add_parser("schedules", help="repeatable jobs: list, add, remove")
    actions = schedules.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", help="every schedule with its next run", **_reads("schedules")
    )
    listing.add_argument("--function", help="only this function's")
    listing.add_argument("--workspace", help="only this workspace's")
    add = actions.add_parser(
        "add", help="create or replace a schedule by name", **_reads("schedules")
    )
    add.add_argument("function")
    add.add_argument("name")
    add.add_argument("--workspace", required=True)
    add.add_argument("--data", required=True, help="the function's input, as JSON")
    rule = add.add_mutually_exclusive_group(required=True)
    rule.add_argument("--cron", help='five fields: "0 9 * * mon-fri"')
    rule.add_argument("--every-ms", type=int, help="an interval in milliseconds")
    add.add_argument("--zone", default="UTC", help="the cron's time zone (default UTC)")
    add.add_argument("--start", help="no run before: RFC 3339, or RFC 9557 with [Zone]")
    add.add_argument("--end", help="no run after, as --start")
    add.add_argument("--limit", type=int, help="at most this many runs")
    remove = actions.add_parser(
        "remove", help="delete a schedule and cancel its pending run", **_reads("schedules")
    )
    remove.add_argument("function")
    remove.add_argument("name")
    remove.add_argument("--workspace", required=True)


def _schedules(args: argparse.Namespace) -> None:
    """`sluice schedules ...`: one call to Redis with the process's settings."""
    try:
        config = settings.from_env(
            dict(os.environ), **({"functions": args.app} if args.app else {})
        )
        registry = load(config.functions)
        data = msgspec.json.decode(args.data) if args.action == "add" else None
    except (SluiceError, msgspec.DecodeError) as exc:
        sys.exit(f"sluice: {exc}")

    async def run() -> str:
        client = connect(config.redis)
        try:
            repeats = Repeats(client, registry)
            if args.action == "add":
                added = await repeats.add(
                    args.function, args.name, workspace=args.workspace, data=data,
                    cron=args.cron, zone=args.zone, every_ms=args.every_ms, start=args.start,
                    end=args.end, limit=args.limit,
                )  # fmt: skip
                return _schedule_line(args.function, added, 5)
            if args.action == "remove":
                if not await repeats.remove(args.function, args.name, workspace=args.workspace):
                    raise SluiceError(f"no schedule {args.name!r} in {args.workspace!r}")
                return f"removed {args.workspace}/{args.name} of {args.function}"
            names = [args.function] if args.function else [fn.name for fn in registry]
            lines = [
                _schedule_line(name, found, 1)
                for name in names
                for found in await repeats.read(name)
                if args.workspace in (None, found.workspace)
            ]
            return "\n".join(lines)
        finally:
            await client.aclose()

    try:
        shown = uvloop.run(run())
    except SluiceError as exc:
        sys.exit(f"sluice: {exc}")
    if shown:
        print(shown)


def _schedule_line(function: str, schedule: Schedule, runs: int) -> str:
    """One schedule, tab-separated: function, workspace/name, rule, state, next runs."""
    shown = schedule_view(function, schedule, Repeats.next_runs(schedule, runs))
    rule = f"cron {shown.cron} {shown.zone}" if shown.cron else f"every {shown.every_ms} ms"
    due = [run.at for run in shown.next_runs]
    state = "paused" if shown.paused else ("active" if due else "ended")
    return "\t".join([function, f"{shown.workspace}/{shown.name}", rule, state, *due])


def _dev_key() -> tuple[str, KeyRing]:
    """`sluice dev` without configured keys: one admin key for this run, shown once
    the ingress listens."""
    key, stored = new_key("dev", (), admin=True)
    return key, KeyRing([stored])
