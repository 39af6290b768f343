"""The fault battery, Redis ACL, every role: an ingress, a scheduler and a worker
process run as the ACL user of infra/redis-acl.conf (test_battery_acl.py runs a
worker and the Python client under it), and an operator uses them over HTTP and
the CLI.

Over HTTP: a delayed job promoted by the scheduler and run, a schedule's repeat
ticks (then paused, resumed, deleted), a job cancelled, a dead letter replayed
and purged, a function paused and resumed, the metrics; then every route of the
ingress's table (`sluice.runtime.ingress.app.ROUTES`: the dashboard's, the
schedules', the seed routes' /api/schedule-sms and the rest) with tenant A's key
and an admin key, as the tenant matrix asks them (test_battery_tenants.py). On
the command line: `sluice schedules add|list|remove` and `sluice check` of the
worker and the scheduler. Every answer must be neither a 5xx nor a 401/403, and
the only command Redis may refuse the user in all that is CONFIG (the start-up
check reads without it). The control takes one command the routes need out of
the user's rules and asserts that the same sweep then finds the refusal.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sluice.runtime.cli import main as cli_main
from sluice.runtime.health import RedisHealth
from sluice.runtime.ingress import services
from sluice.runtime.ingress.app import build_app
from sluice.runtime.ingress.auth import KeyRing
from sluice.streams.connection import Redis, connect
from tests.chaos.conftest import Reported
from tests.chaos.security import Keys, Tally
from tests.chaos.test_battery_acl import as_user, denials, sluice_rule
from tests.chaos.test_battery_tenants import Matrix, Tenants, owners, probe, seed
from tests.conftest import settings_for
from tests.ingress.conftest import MAX_BODY, IngressServer, registry
from tests.redis_server import RedisServer, free_port
from tests.runtime.helpers import start_worker, wait_until

pytestmark = pytest.mark.chaos

Report = Callable[[Reported], None]

FUNCTIONS = "tests.chaos.acl_functions:FUNCTIONS"
# What Redis may refuse the user: the start-up check's CONFIG GET (it says it could
# not read the settings, and goes on).
TOLERATED = {"config|get"}
HOUR_MS = 3_600_000


@dataclass
class Roles:
    """The processes under the user, and what an operator reaches them by."""

    folder: Path
    url: str
    keys: Keys
    base: str
    health: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, role: str, *options: str, environ: dict[str, str]) -> None:
        self.processes[role] = start_worker(
            self.url,
            self.folder / "ledger",
            role=role,
            options=options,
            log=self.folder / f"{role}.log",
            environ={"SLUICE_FUNCTIONS": FUNCTIONS, **environ},
        )

    def stop(self) -> dict[str, int]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for role, process in self.processes.items():
            try:
                codes[role] = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[role] = process.wait()
        return codes


@pytest.fixture
async def user_server(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, Redis]]:
    """A private server (its ACL log is this test's alone) and an admin client."""
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    admin = connect(settings_for(server.url))
    yield server, admin
    await admin.aclose()
    server.stop()


def start_roles(folder: Path, url: str, environ: dict[str, str] | None = None) -> Roles:
    """An ingress, a scheduler and a worker (which leaves promotion to the scheduler),
    each given `environ` besides."""
    port = free_port()
    roles = Roles(folder, url, Keys(folder / "keys.json"), f"http://127.0.0.1:{port}", {})
    given = environ or {}
    roles.start("ingress", environ={**given, "SLUICE_INGRESS_HOST": "127.0.0.1",
                                    "SLUICE_INGRESS_PORT": str(port),
                                    "SLUICE_API_KEYS_FILE": str(roles.keys.path)})  # fmt: skip
    roles.health = {"scheduler": free_port(), "worker": free_port()}
    health = {role: {**given, "SLUICE_HEALTH_PORT": str(port)}
              for role, port in roles.health.items()}  # fmt: skip
    roles.start("scheduler", environ=health["scheduler"])
    roles.start("worker", "--no-scheduler", "--functions", "tasks,webhook.deliver",
                environ={**health["worker"], "SLUICE_WEBHOOK_ALLOW": "127.0.0.1"})  # fmt: skip
    return roles


async def ready(t: Tenants) -> None:
    async def answers() -> bool:
        try:
            status, _ = await t.call("GET", "/readyz", {})
        except aiohttp.ClientConnectionError:
            return False
        return status == 200

    await wait_until(answers, 30.0, what="the ingress to answer ready as the ACL user")


class Receiver:
    """Webhook endpoints: /ok answers 200, /down 500, /gone 410."""

    ANSWERS: ClassVar[dict[str, int]] = {"ok": 200, "down": 500, "gone": 410}

    def __init__(self) -> None:
        self.port = free_port()
        self.posts: collections.Counter[str] = collections.Counter()
        app = web.Application()
        app.router.add_post("/{path}", self.answer)
        self.runner = web.AppRunner(app)

    async def answer(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.posts[path] += 1
        return web.Response(status=self.ANSWERS[path])

    async def __aenter__(self) -> Receiver:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


@dataclass
class Operator:
    """An operator's requests and what came back out of their class."""

    t: Tenants
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    wrong: list[str] = field(default_factory=list)
    published: set[str] = field(default_factory=set)

    async def ask(self, method: str, path: str, who: str, body: object = None,
                  want: int = 200) -> Any:  # fmt: skip
        status, text = await self.t.call(method, path, self.t.keys.auth(who), body)
        self.statuses[status] += 1
        if status != want:
            self.wrong.append(f"{method} {path} answered {status}, not {want}: {text[:200]}")
            return None
        return json.loads(text) if text.startswith(("{", "[")) else text

    async def state_becomes(self, job: str, state: str) -> None:
        async def reached() -> bool:
            _, text = await self.t.call("GET", f"/v1/jobs/{job}?function=tasks",
                                        self.t.keys.auth("acme"))  # fmt: skip
            return bool(text.startswith("{") and json.loads(text).get("state") == state)

        await wait_until(reached, 30.0, what=f"job {job} to be {state}")

    async def publish(self, data: dict[str, object], delay_ms: int = 0) -> str:
        event = {"workspace": "acme", "data": data, "delay_ms": delay_ms}
        published = await self.ask("POST", "/v1/events/tasks", "acme", event, want=202)
        assert published is not None, self.wrong
        self.published.add(published["id"])
        return str(published["id"])

    async def scheduled_runs(self) -> int:
        """Completed jobs of tasks the operator did not publish: a schedule's runs.
        (A completed job's listing holds no input to tell them by.)"""
        page = await self.ask("GET", "/v1/jobs?function=tasks&state=completed&workspace=acme",
                              "acme")  # fmt: skip
        return sum(1 for job in (page or {}).get("jobs", []) if job["id"] not in self.published)


async def operate(op: Operator) -> int:
    """What an operator does with a running deployment; the repeat ticks seen."""
    # A delayed job: promoted by the scheduler, run by the worker.
    await op.state_becomes(await op.publish({"n": 1}, delay_ms=300), "completed")
    # Repeat ticks: a schedule's first two runs, then pause, resume, delete.
    schedule = {"workspace": "acme", "data": {"n": 2}, "every_ms": 1000, "limit": 2}
    await op.ask("PUT", "/v1/schedules/tasks/ticker", "acme", schedule)

    async def ticked() -> bool:
        return await op.scheduled_runs() >= 2

    await wait_until(ticked, 30.0, what="two repeat ticks run")
    for action in ("pause", "resume"):
        await op.ask("POST", f"/v1/schedules/tasks/ticker/{action}", "acme")
    await op.ask("DELETE", "/v1/schedules/tasks/ticker", "acme", want=204)
    # A delayed job cancelled.
    later = await op.publish({"n": 3}, delay_ms=HOUR_MS)
    await op.ask("DELETE", f"/v1/jobs/{later}?function=tasks", "acme")
    await op.state_becomes(later, "cancelled")
    # A dead letter replayed (it dies again: it raises on every attempt), then purged.
    doomed = await op.publish({"n": 4, "mode": "raise"})
    await op.state_becomes(doomed, "dead")
    replayed = await op.ask("POST", "/v1/dead-letters/tasks/replay", "acme", {"workspace": "acme"})
    assert replayed == {"replayed": 1}, op.wrong
    await op.state_becomes(doomed, "dead")
    purged = await op.ask("POST", "/v1/dead-letters/tasks/purge", "acme", {"workspace": "acme"})
    assert purged == {"purged": 1}, op.wrong
    # A function paused (its job waits), resumed (it runs).
    await op.ask("POST", "/v1/queues/tasks/pause", "admin", want=204)
    waiting = await op.publish({"n": 5})
    await op.ask("POST", "/v1/queues/tasks/resume", "admin", want=204)
    await op.state_becomes(waiting, "completed")
    # A webhook to three endpoints: one takes it, one is down (the job retries,
    # keeping the first's answer), one is gone (disabled).
    async with Receiver() as receiver:
        for path in ("ok", "down", "gone"):
            endpoint = {"url": f"http://127.0.0.1:{receiver.port}/{path}", "description": path}
            await op.ask("POST", "/v1/webhooks/endpoints", "acme", endpoint, want=201)
        assert op.wrong == [], op.wrong
        hook = {"workspace": "acme", "data": {"type": "booking.created", "data": {"b": 1}}}
        published = await op.ask("POST", "/v1/events/webhook.deliver", "acme", hook, want=202)
        assert published is not None, op.wrong

        async def retrying() -> bool:
            job = await op.ask("GET", f"/v1/jobs/{published['id']}?function=webhook.deliver",
                               "acme")  # fmt: skip
            return bool(job and job["state"] in ("delayed", "retrying", "dead"))

        await wait_until(retrying, 30.0, what="the webhook's first attempt settled")
        assert receiver.posts == {"ok": 1, "down": 1, "gone": 1}, receiver.posts
    listed = await op.ask("GET", "/v1/webhooks/endpoints", "acme")
    disabled = [e["description"] for e in (listed or {}).get("endpoints", []) if e["disabled"]]
    assert disabled == ["gone"], listed
    # The metrics, as Prometheus, the API and the seed routes read them.
    await op.ask("GET", "/metrics", "admin")
    await op.ask("GET", "/v1/metrics", "admin")
    await op.ask("GET", "/api/metrics", "acme")
    return await op.scheduled_runs()


async def cli(roles: Roles, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`sluice schedules` and `sluice check` as the user (`sluice.runtime.cli.main` in
    a thread of this process: a fresh interpreter each took seconds here), what
    went wrong."""
    monkeypatch.setenv("REDIS_URL", roles.url)
    monkeypatch.setenv("SLUICE_FUNCTIONS", FUNCTIONS)
    wrong = []

    async def run(*args: str) -> tuple[int, str]:
        def main() -> tuple[int, str]:
            shown = io.StringIO()
            try:
                with contextlib.redirect_stdout(shown):
                    cli_main(list(args))
            except SystemExit as exit:
                return (exit.code if isinstance(exit.code, int) else 1), f"{exit.code}"
            return 0, shown.getvalue()

        return await asyncio.to_thread(main)

    steps = [
        ("schedules", "add", "tasks", "cli", "--workspace", "acme", "--data", '{"n": 6}',
         "--every-ms", str(HOUR_MS)),
        ("schedules", "list", "--function", "tasks"),
        ("schedules", "remove", "tasks", "cli", "--workspace", "acme"),
    ]  # fmt: skip
    for args in steps:
        code, said = await run(*args)
        if code != 0 or (args[1] == "list" and "acme/cli" not in said):
            wrong.append(f"sluice {' '.join(args)}: exit {code}: {said}")
    for role, port in roles.health.items():
        monkeypatch.setenv("SLUICE_HEALTH_PORT", str(port))
        code, said = await run("check")
        if code != 0:
            wrong.append(f"sluice check of the {role}: exit {code}: {said}")
    return wrong


async def sweep(t: Tenants) -> Matrix:
    """Every route with A's key and an admin key (the tenant matrix's owners)."""
    matrix = Matrix()
    await seed(t)
    await probe(t, matrix, owners(t.keys))
    return matrix


async def test_the_ingress_scheduler_and_cli_run_as_the_acl_user(
    tmp_path: Path,
    user_server: tuple[RedisServer, Redis],
    figures: Report,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, admin = user_server
    url, user = await as_user(admin, server, sluice_rule())
    await user.aclose()
    roles = start_roles(tmp_path, url)
    try:
        async with aiohttp.ClientSession() as http:
            t = Tenants(http, roles.base, roles.keys)
            await ready(t)
            op = Operator(t)
            ticks = await operate(op)
            matrix = await sweep(t)
        wrong = await cli(roles, monkeypatch)
    finally:
        codes = roles.stop()
    refused = await denials(admin)
    statuses = op.statuses + matrix.statuses
    figures(Tally("redis-acl-roles", {
        "routes": len(matrix.routes), "requests": sum(statuses.values()), "ticks": ticks,
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "violations": len(op.wrong) + len(matrix.violations) + len(wrong),
        "refused": len(set(refused) - TOLERATED),
    }))  # fmt: skip
    assert op.wrong == [], "\n".join(op.wrong)
    assert matrix.violations == [], "\n".join(matrix.violations)
    assert wrong == [], "\n".join(wrong)
    assert set(refused) <= TOLERATED, refused
    assert codes == {"ingress": 0, "scheduler": 0, "worker": 0}, codes


async def test_control_a_command_taken_out_of_the_rule_is_found(
    tmp_path: Path, user_server: tuple[RedisServer, Redis], figures: Report
) -> None:
    server, admin = user_server
    # HGETALL reads a schedule, a webhook endpoint and the metrics: routes need it.
    rules = [rule for rule in sluice_rule() if rule != "+hgetall"]
    url, user = await as_user(admin, server, rules)
    # The ingress's app in this process (the same routes, without a process's start).
    keys = Keys(tmp_path / "keys.json")
    built = services(user, registry(), KeyRing.load(keys.path), RedisHealth(url), 2.0)
    app = IngressServer(build_app(built, MAX_BODY), host="127.0.0.1")
    await app.start_server()
    http = TestClient(app)
    await http.start_server()
    try:
        matrix = await sweep(Tenants(http.session, str(http.make_url("")).rstrip("/"), keys))
    finally:
        await http.close()
        await user.aclose()
    refused = set(await denials(admin)) - TOLERATED
    figures(Tally("redis-acl-roles-control", {
        "requests": matrix.requests(), "violations": len(matrix.violations),
        "server_errors": sum(n for s, n in matrix.statuses.items() if s >= 500),
        "refused": len(refused),
    }))  # fmt: skip
    assert "hgetall" in refused
    assert matrix.violations
