"""The fault battery, raw values: Hypothesis puts arbitrary raw text and bytes in
every path segment and query parameter of every route of the ingress
(runtime.ingress.app.ROUTES), with a valid key, where schemathesis stays within
the document's types.

Values: any unicode (NUL and control characters too), percent-encoded bytes
that are no UTF-8, escapes left malformed (`%`, `%zz`), dot segments, empty
values, negative and huge numbers, malformed cursors, long values (up to what
aiohttp's parser takes in a request line), and each query parameter repeated;
the rest of a request is valid (a body each route takes, the other segments
naming real things), so that the raw value is what is judged.

The bar, for every request: no 5xx; a 4xx answers a problem (application/
problem+json, its `status` the answer's); and a refused request changed nothing
in Redis (every key's value before and after). Bounded: a few dozen requests;
`--long`: thousands.

The control: the same sweep of two routes written carelessly for it (one reads
an int from its segment unchecked, one writes to Redis before it refuses)
must fail on both counts.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from sluice.runtime.ingress.app import ROUTES
from sluice.runtime.ingress.auth import ApiKey
from sluice.runtime.ingress.problems import Problem
from sluice.runtime.ingress.routes import Keyed, Route, Services
from sluice.streams.connection import Redis, RedisSettings, connect
from tests.chaos.conftest import Reported
from tests.chaos.security import Tally
from tests.chaos.test_battery_tenants import body_for
from tests.ingress.conftest import Api, start_api
from tests.ingress.test_input import BAD_CURSORS, BAD_POSITIONS
from tests.redis_server import RedisServer

pytestmark = pytest.mark.chaos

Report = Callable[[Reported], None]
PROBLEM = "application/problem+json"
HOUR_MS = 3_600_000
# Path parameters naming real things (the job and schedule made by `seed`).
VALID = {"topic": "tasks", "function": "tasks", "name": "daily", "tag": "campaign:spring",
         "workspace": "acme", "id": "raw-job-1", "n": "1"}  # fmt: skip
# Values a query parameter of this name takes, so the other parameters get past it.
VALID_QUERY = {"function": "tasks", "state": "delayed", "limit": "5", "workspace": "acme",
               "runs": "2", "tag": "campaign:spring", "type": "sms"}  # fmt: skip
# aiohttp's parser refuses a request line over 8190 bytes with a plain 400 of
# its own, before any route (finding 4's limit): values stay below it.
LONGEST = 2000

NUMBERS = ["-1", "0", "-0", "1e3", "1e309", "NaN", "inf", "-inf", "0x10", " 1", "1 ", "+1",
           "1.5", "9" * 30, str(2**63), str(-(2**63) - 1), str(2**64), "٣"]  # fmt: skip
TRICKS = ["", ".", "..", "...", "%", "%%", "%zz", "%0", "%00", "%2e%2e", "%2F", "%2f..%2f",
          "%ff%fe", "%c0%af", "%ed%a0%80", "%25", "a%00b", "~", "*", "null", "true", "[]",
          "{}", "\\", "../../etc/passwd", "%E2%80%AE", "x" * LONGEST]  # fmt: skip


def encoded(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# Each strategy gives the value as it goes on the wire (already percent-encoded).
RAW = st.one_of(
    st.text(max_size=40).map(encoded),
    st.binary(max_size=24).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),
    st.sampled_from(TRICKS),
    st.sampled_from(NUMBERS).map(encoded),
    st.sampled_from(BAD_CURSORS + BAD_POSITIONS).map(encoded),
    st.text(alphabet=st.sampled_from("%.0-9az/:"), max_size=12),
    st.integers(1, LONGEST).map(lambda n: encoded("é" * (n // 6))),
)


def segment(name: str) -> st.SearchStrategy[str]:
    return st.just(encoded(VALID[name])) | RAW


def query_of(route: Route) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Each documented parameter absent, valid or raw, once or repeated; now and
    then a name of no route."""
    names = sorted(route.query)

    def one(name: str) -> st.SearchStrategy[list[tuple[str, str]]]:
        valid = st.just(encoded(VALID_QUERY.get(name, "1")))
        return st.lists((valid | RAW).map(lambda v: (name, v)), max_size=3)

    extra = st.lists(st.tuples(RAW, RAW), max_size=1)
    return st.tuples(*(one(n) for n in names), extra).map(
        lambda parts: [pair for part in parts for pair in part]
    )


@st.composite
def requests(draw: st.DrawFn, routes: Sequence[Route]) -> tuple[Route, str, str]:
    """A route and its URL: path with raw segments, raw query."""
    route = draw(st.sampled_from(routes))
    parts = route.path.split("/")
    for i, part in enumerate(parts):
        if part.startswith("{"):
            parts[i] = draw(segment(part.strip("{}")))
    query = draw(query_of(route))
    url = "/".join(parts)
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query)
    return route, url, draw(st.sampled_from(["admin", "acme"]))


@dataclass
class Sweep:
    """Counts, and the broken promises found (the first few, for the report)."""

    statuses: dict[int, int] = field(default_factory=dict)
    server_errors: int = 0
    not_problems: int = 0
    changed: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.failures) < 5:
            self.failures.append(what)

    def figures(self, scenario: str) -> Tally:
        counts = {"requests": sum(self.statuses.values()), "server_errors": self.server_errors,
                  "not_problems": self.not_problems, "changed": self.changed,
                  **{f"s{s}": n for s, n in sorted(self.statuses.items())}}  # fmt: skip
        return Tally(scenario, counts)


async def state(redis: Redis) -> dict[bytes, object]:
    """Every key with its value: hashes and sets as sorted items, since their DUMP
    follows a dict's order, which a read moves as it rehashes the dict; the other
    types' DUMP is in their own order."""
    keys: Any = await redis.keys("*")
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
        types: Any = await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for key, kind in zip(keys, types, strict=True):
            if kind == b"hash":
                pipe.hgetall(key)
            elif kind == b"set":
                pipe.smembers(key)
            else:
                pipe.dump(key)
        values: Any = await pipe.execute()
    canonical = (sorted(v.items()) if isinstance(v, dict) else sorted(v) if isinstance(v, set)
                 else v for v in values)  # fmt: skip
    return dict(zip(keys, canonical, strict=True))


async def emptied(redis: Redis) -> None:
    await redis.flushall()


async def seed(api: Api) -> None:
    event = {"workspace": "acme", "id": "raw-job-1", "data": {"n": 1}, "delay_ms": HOUR_MS,
             "tags": ["campaign:spring"]}  # fmt: skip
    assert (await api.post("/v1/events/tasks", event)).status == 202
    schedule = {"data": {"n": 1}, "cron": "0 3 * * *"}
    answer = await api.http.put("/v1/schedules/tasks/daily", json=schedule,
                                headers=api.auth("acme"))  # fmt: skip
    assert answer.status == 200, await answer.text()


async def ask(api: Api, redis: Redis, route: Route, url: str, who: str, sweep: Sweep) -> None:
    body, _ = body_for(route, "acme") if route.body is not None else (None, False)
    before = await state(redis)
    answer = await api.http.session.request(
        route.method,
        URL(str(api.http.make_url("/")).rstrip("/") + url, encoded=True),
        json=body,
        headers=api.auth(who),
    )
    data = await answer.read()
    sweep.statuses[answer.status] = sweep.statuses.get(answer.status, 0) + 1
    what = f"{route.method} {url[:300]} as {who}: {answer.status} {data[:300]!r}"
    if answer.status >= 500:
        sweep.server_errors += 1
        sweep.fail(what)
    if 400 <= answer.status < 500:
        problem = answer.content_type == PROBLEM and msgspec.json.decode(data).get("status")
        if problem != answer.status:
            sweep.not_problems += 1
            sweep.fail(what)
        after = await state(redis)
        if after != before:
            sweep.changed += 1
            keys = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
            sweep.fail(f"changed {keys}: {what}")


def sweep(
    server: RedisServer, routes: Sequence[Route], examples: int, served: Sequence[Route] = ROUTES
) -> Sweep:
    """Hypothesis's `examples` requests over `routes` of an app serving `served`."""
    runner = asyncio.Runner()
    redis = connect(RedisSettings(url=server.url))
    runner.run(emptied(redis))
    api = runner.run(start_api(redis, server.url, routes=served))
    found = Sweep()
    try:
        runner.run(seed(api))

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(request=requests(routes))
        def check(request: tuple[Route, str, str]) -> None:
            route, url, who = request
            runner.run(ask(api, redis, route, url, who, found))

        check()
    finally:
        runner.run(api.http.close())
        runner.run(redis.aclose())
        runner.close()
    return found


@pytest.mark.timeout(600)  # --long: some 2,000 requests
def test_no_raw_value_in_a_path_or_query_gets_a_server_error_or_changes_anything(
    shared_server: RedisServer, long_run: bool, figures: Report
) -> None:
    found = sweep(shared_server, ROUTES, 2000 if long_run else 60)
    figures(found.figures("raw-values"))
    assert found.failures == [], "\n".join(found.failures)


# The control's routes: written without care for what a client sends.
async def careless_int(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    return web.json_response({"n": int(request.match_info["n"])})


async def careless_write(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    await services.redis.incr("sluice:control:count")
    if request.query.get("ok") != "yes":
        raise Problem(422, "Invalid request", "ok must be yes")
    return web.json_response({})


CONTROL = [
    Route("GET", "/v1/control/{n}", Keyed(careless_int), "An int, read unchecked", "control",
          replies={200: None}),
    Route("POST", "/v1/control", Keyed(careless_write), "Writes, then refuses", "control",
          replies={200: None}, query={"ok": (str, "yes")}),
]  # fmt: skip


def test_control_careless_routes_are_caught(shared_server: RedisServer, figures: Report) -> None:
    found = sweep(shared_server, CONTROL, 60, [*ROUTES, *CONTROL])
    figures(found.figures("raw-values-control"))
    assert found.server_errors >= 1
    assert found.changed >= 1
