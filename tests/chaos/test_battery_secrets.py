"""The fault battery, secrets: no API key (nor any 12-character piece of one), Redis
password or signing secret in any log line or error body.

A redis-server with `requirepass`; an ingress and a worker at DEBUG with JSON
logs, the worker delivering to webhook endpoints and to an SMS callback (each
signed with a `whsec_` secret) that answer 500, so their failures are logged;
requests with bad keys (unknown, truncated, the wrong scheme, too long for the
parser), a forbidden one, a webhook endpoint created; and an ingress and a
worker given a wrong Redis password. Then every line the four processes wrote
and every error body is scanned for every piece of every secret.

The control: a handler that logs what its job says (tests.chaos.secret_functions)
is given a piece of the admin key, and the scan must find it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sluice.streams.connection import Redis
from tests.chaos.conftest import Reported
from tests.chaos.security import GuardedServer, Keys, Tally, leaks
from tests.ingress.conftest import start_api
from tests.redis_server import RedisServer, free_port
from tests.runtime.helpers import start_worker, wait_until

pytestmark = pytest.mark.chaos

Report = Callable[[Reported], None]

FUNCTIONS = "tests.chaos.secret_functions:FUNCTIONS"


class Receiver:
    """Webhook endpoints and the SMS callback: every POST is answered 500."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts = 0
        app = web.Application()
        app.router.add_post("/{path}", self.refuse)
        self.runner = web.AppRunner(app)

    async def refuse(self, request: web.Request) -> web.Response:
        self.posts += 1
        return web.Response(status=500, text="the receiver is down")

    async def __aenter__(self) -> Receiver:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


class Processes:
    """Sluice processes at DEBUG with JSON logs, each writing its own log file."""

    def __init__(self, folder: Path, keys: Keys) -> None:
        self.folder = folder
        self.keys = keys
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, name: str, redis: dict[str, str], **extra: str) -> int:
        """Start `role` as `name`: its log is `name.log`; an ingress's port is returned."""
        port = free_port()
        environ = {
            "SLUICE_FUNCTIONS": FUNCTIONS,
            "SLUICE_LOG_LEVEL": "DEBUG",
            "SLUICE_LOG_FORMAT": "json",
            **redis,
            **extra,
        }
        if role == "ingress":
            environ |= {
                "SLUICE_INGRESS_HOST": "127.0.0.1",
                "SLUICE_INGRESS_PORT": str(port),
                "SLUICE_API_KEYS_FILE": str(self.keys.path),
                "SLUICE_ACCESS_LOG": "true",
            }
        process = start_worker(
            None,
            self.folder / "unused",
            role=role,
            log=self.folder / f"{name}.log",
            environ=environ,
        )
        self.started.append(process)
        return port

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def lines(self) -> list[str]:
        return [
            line
            for log in sorted(self.folder.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()
        ]


class Http:
    """One ingress's client, keeping every error body it was answered."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{port}"
        self.errors: list[str] = []

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: object = None
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, headers=headers, json=body
        ) as answer:
            text = await answer.text()
        if answer.status >= 400:
            self.errors.append(text)
        try:
            return answer.status, json.loads(text)
        except ValueError:
            return answer.status, text

    async def up(self) -> None:
        async def answers() -> bool:
            try:
                status, _ = await self.call("GET", "/healthz")
            except aiohttp.ClientConnectionError:
                return False
            return status == 200

        await wait_until(answers, 30.0, what="the ingress to answer")

    async def job_state(self, auth: dict[str, str], function: str, job: str) -> str:
        status, found = await self.call("GET", f"/v1/jobs/{job}?function={function}", auth)
        assert status == 200, found
        state: str = found["state"]
        return state


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


async def test_no_secret_in_any_log_or_error_body(
    tmp_path: Path, session: aiohttp.ClientSession, figures: Report
) -> None:
    password, wrong = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    server = GuardedServer(
        tmp_path / "redis", client={"password": password}, options=("--requirepass", password)
    )
    server.start()
    keys = Keys(tmp_path / "keys.json")
    found: dict[str, str] = {f"API key {who}": key for who, key in keys.plain.items()}
    found |= {"Redis password": password, "wrong Redis password": wrong}
    sms_secret = whsec()
    found["SMS callback secret"] = sms_secret
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = Processes(logs, keys)
    url = f"redis://127.0.0.1:{server.port}/0"
    good = {"REDIS_URL": url, "REDIS_PASSWORD": password}
    try:
        async with Receiver() as receiver:
            hooks = f"http://127.0.0.1:{receiver.port}"
            ingress = Http(session, processes.start("ingress", "ingress", good))
            processes.start(
                "worker",
                "worker",
                good,
                SLUICE_WEBHOOK_ALLOW="127.0.0.1",
                SLUICE_SMS_PROVIDER="callback",
                SLUICE_SMS_CALLBACK_URL=f"{hooks}/sms",
                SLUICE_SMS_CALLBACK_SECRET=sms_secret,
            )
            # The wrong password in the URL for one, in REDIS_PASSWORD for the other.
            in_url = {"REDIS_URL": f"redis://:{wrong}@127.0.0.1:{server.port}/0"}
            refused = Http(session, processes.start("ingress", "ingress-refused", in_url))
            processes.start("worker", "worker-refused", {"REDIS_URL": url, "REDIS_PASSWORD": wrong})
            await ingress.up()
            await refused.up()
            found["webhook secret"] = await exercise(ingress, refused, keys, hooks)
            lines, bodies = processes.lines(), ingress.errors + refused.errors
            assert receiver.posts >= 2  # the webhook's and the SMS's failures were logged
            kept = scan(lines, bodies, found)
            figures(tally("secrets", lines, bodies, found, kept))
            assert kept == []
            # Control: a handler logs a piece of the admin key it was given.
            acme = keys.auth("acme")
            piece = keys.plain["admin"][5:17]
            status, said = await ingress.call(
                "POST", "/v1/events/chaos.say", acme, {"workspace": "acme", "data": {"text": piece}}
            )
            assert status == 202, said

            async def said_it() -> bool:
                return await ingress.job_state(acme, "chaos.say", said["id"]) == "completed"

            await wait_until(said_it, what="the leaky handler to run")
            lines = processes.lines()
            control = scan(lines, bodies, found)
            figures(tally("secrets-control", lines, bodies, found, control))
            assert any("API key admin" in leak for leak in control), control
    finally:
        processes.stop()
        server.stop()


async def exercise(ingress: Http, refused: Http, keys: Keys, hooks: str) -> str:
    """Requests that make the processes log: good ones, bad keys, a webhook endpoint
    and its failing deliveries, and an ingress Redis refuses. The endpoint's secret."""
    acme, other = keys.auth("acme"), keys.auth("other")
    plain = keys.plain["acme"]
    status, endpoint = await ingress.call(
        "POST", "/v1/webhooks/endpoints?workspace=acme", acme, {"url": f"{hooks}/hook"}
    )
    assert status == 201, endpoint
    event = {"workspace": "acme", "data": {"type": "booking.created", "data": {"b": 1}}}
    status, hook = await ingress.call("POST", "/v1/events/webhook.deliver", acme, event)
    assert status == 202, hook
    sms = {"workspace": "acme", "data": {"to": "+14155550100", "body": "hi"}}
    status, text = await ingress.call("POST", "/v1/events/sms.send", acme, sms)
    assert status == 202, text
    bad_keys = [
        {},
        {"Authorization": "Bearer sk_" + "x" * 43},
        {"Authorization": f"Bearer {plain[:-1]}"},
        {"Authorization": f"Basic {plain}"},
        {"Authorization": plain},
    ]
    for headers in bad_keys:
        for method, path, body in (
            ("POST", "/v1/events/sms.send", sms),
            ("GET", "/v1/queues", None),
            ("GET", "/metrics", None),
        ):
            status, _ = await ingress.call(method, path, headers, body)
            assert status == 401
    assert (await ingress.call("GET", "/v1/queues", acme))[0] == 403
    assert (await ingress.call("POST", "/v1/events/sms.send", other, sms))[0] == 403
    # A header over the parser's limit, with the key in it: refused before any
    # route, neither its answer nor its log line quotes it (RELIABILITY.md, finding 4).
    status, _ = await ingress.call(
        "GET", "/v1/queues", {"Authorization": f"Bearer {plain}" + "x" * 9000}
    )
    assert status == 431
    # Redis refuses the other ingress: 503, said why.
    assert (await refused.call("GET", "/readyz"))[0] == 503
    assert (await refused.call("POST", "/v1/events/sms.send", acme, sms))[0] == 503

    # Each delivery failed and was settled for a retry, its failure logged.
    async def retried(function: str, job: str) -> bool:
        return await ingress.job_state(acme, function, job) in ("delayed", "dead")

    await wait_until(lambda: retried("webhook.deliver", hook["id"]), what="a webhook retry")
    await wait_until(lambda: retried("sms.send", text["id"]), what="an SMS retry")
    secret: str = endpoint["secret"]
    return secret


def scan(lines: list[str], bodies: list[str], secrets: dict[str, str]) -> list[str]:
    found = [f"log: {name}: {line[:300]}" for line in lines for name in leaks(line, secrets)]
    return found + [f"body: {name}: {b[:300]}" for b in bodies for name in leaks(b, secrets)]


def tally(
    name: str, lines: list[str], bodies: list[str], secrets: dict[str, str], found: list[str]
) -> Tally:
    levels: list[str] = []
    for line in lines:
        # A line that is no JSON object is scanned all the same.
        with contextlib.suppress(ValueError, AttributeError):
            levels.append(str(json.loads(line).get("level")))
    return Tally(
        name,
        {
            "log_lines": len(lines),
            "json_lines": len(levels),
            "debug_lines": levels.count("debug"),
            "error_bodies": len(bodies),
            "secrets": len(secrets),
            "found": len(found),
        },
    )


async def test_a_header_too_long_for_the_parser_is_not_quoted_back(
    redis: Redis, shared_server: RedisServer
) -> None:
    """Finding 4: aiohttp's own 400 quoted the header (tests/ingress/test_parser_errors.py
    has the other errors of its parser)."""
    api = await start_api(redis, shared_server.url)
    try:
        key = api.keys["acme"]
        too_long = {"Authorization": f"Bearer {key}" + "x" * 9000}
        answer = await api.http.get("/v1/queues", headers=too_long)
        assert answer.status == 431
        assert leaks(await answer.text(), {"API key": key}) == []
    finally:
        await api.http.close()
