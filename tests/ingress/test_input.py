"""Whatever a client sends is answered with a 4xx problem, never a 500: listing
cursors, due times beyond the horizon (and records an old version wrote with
one), integers beyond 64 bits, oversized headers, and random query parameters
and path segments on every read route."""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.parse
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.runtime.ingress.jobs import STATES
from sluice.runtime.registry import Registry
from sluice.streams import envelope as env
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.publish import Outgoing, publish
from tests.ingress.conftest import Api, registry, start_api
from tests.redis_server import RedisServer

PROBLEM = "application/problem+json"

# Each malformed in every state: not a partition index, an index past the last
# partition, not the position the state's source takes.
BAD_CURSORS = ["abc", "0:abc", "0:b-x", "-1", "0:(", "0:1-x", "0:-1", "2:", "9:", "0:b",
               "0:bx", ":", "1e3:", "0:1-", "0:-", "0:99999999999999999999-0", "0:1-2-3",
               "0:18446744073709551616-0", "0: 1", "0:0x10", "0:1.5"]  # fmt: skip


async def problem_of(answer: Any) -> dict[str, Any]:
    assert answer.content_type == PROBLEM, await answer.text()
    body: dict[str, Any] = await answer.json(content_type=PROBLEM)
    assert body["status"] == answer.status
    return body


# The listing over every function's cursor is base64url JSON: these decode, but
# name no position it hands out.
BAD_POSITIONS = ["WyJiIiw5OTk5LDBd", "WyJrIiwtMSwwLCIiLCIiXQ==", "WyJrIl0=", "bnVsbA==", "e30="]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("function", ["batch-tasks", None])
async def test_a_malformed_cursor_is_a_client_error_in_every_state(
    api: Api, state: str, function: str | None
) -> None:
    only = {} if function is None else {"function": function}
    for cursor in BAD_CURSORS + (BAD_POSITIONS if function is None else []):
        answer = await api.http.get(
            "/v1/jobs",
            params={**only, "state": state, "cursor": cursor},
            headers=api.auth("admin"),
        )
        assert answer.status == 422, (cursor, await answer.text())
        assert "cursor" in (await problem_of(answer))["detail"]


def delayed(**when: object) -> dict[str, object]:
    return {"workspace": "acme", "data": {"n": 1}, **when}


async def test_a_due_time_beyond_the_horizon_is_refused_at_publish_and_reschedule(
    api: Api,
) -> None:
    for when, field in (
        ({"delay_ms": 10**15}, "delay_ms"),
        ({"delay_ms": 11 * 365 * 86_400_000}, "delay_ms"),
        ({"run_at": "9999-12-31T23:59:59Z"}, "run_at"),
    ):
        answer = await api.post("/v1/events/tasks", delayed(**when))
        assert answer.status == 422, await answer.text()
        assert field in (await problem_of(answer))["errors"][0]["message"]
    within = await api.post("/v1/events/tasks", delayed(delay_ms=9 * 365 * 86_400_000, id="j"))
    assert within.status == 202
    for when, field in (({"delay_ms": 10**15}, "delay_ms"), ({"run_at": "9999-01-01T00:00Z"},
                        "run_at")):  # fmt: skip
        answer = await api.http.patch("/v1/jobs/j", json=when, headers=api.auth("acme"))
        assert answer.status == 422, await answer.text()
        problem = await problem_of(answer)
        assert problem["errors"][0]["path"] == f"$.{field}"


async def test_a_record_written_with_a_float_due_time_is_still_read(api: Api, redis: Redis) -> None:
    """Before the horizon, Lua wrote a due time of 1e14 ms or more as 2.53402300799e+14:
    such a record must still be shown, listed and rescheduled."""
    reg: Registry = registry()
    keys = reg.partitions("tasks", "acme", cluster=False)[0]
    envelope = env.Envelope(
        id="old", function="tasks", workspace="acme",
        payload=msgspec.Raw(env.encode_payload({"n": 1})), created_ms=env.now_ms(),
    )  # fmt: skip
    await publish(redis, keys, [Outgoing(envelope, due_ms=253_402_300_799_000)])
    stored = await redis.hget(keys.jobs, "old")
    assert isinstance(stored, bytes)
    assert b"|2.53402300799e+14|" in stored
    answer = await api.http.get("/v1/jobs/old", headers=api.auth("acme"))
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["due_ms"] == 253_402_300_799_000
    listed = await api.http.get(
        "/v1/jobs", params={"function": "tasks", "state": "delayed"}, headers=api.auth("admin")
    )
    assert listed.status == 200, await listed.text()
    assert [j["id"] for j in (await listed.json())["jobs"]] == ["old"]
    moved = await api.http.patch(
        "/v1/jobs/old", json={"delay_ms": 60_000}, headers=api.auth("acme")
    )
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["due_ms"] < 253_402_300_799_000


async def test_an_integer_beyond_64_bits_in_data_is_a_client_error(api: Api) -> None:
    big = 123456789012345678901234567890
    for topic, data in (("tasks", {"n": big}), ("tasks", {"n": -big})):
        answer = await api.post(f"/v1/events/{topic}", {"workspace": "acme", "data": data})
        assert 400 <= answer.status < 500, await answer.text()
        assert "64" in (await problem_of(answer))["errors"][0]["message"]


async def test_oversized_headers_are_a_client_error_without_a_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for headers in (
        {**api.auth("acme"), "X-Big": "a" * 20_000},
        {**api.auth("acme"), **{f"X-H{i}": "v" for i in range(500)}},
        {"Authorization": "Bearer sk_" + "a" * 20_000},
    ):
        answer = await api.http.get("/v1/jobs/x", headers=headers)
        assert 400 <= answer.status < 500, await answer.text()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "sk_aaa" not in caplog.text  # nor any part of a key
    # The ingress still serves the next request.
    assert (await api.http.get("/healthz")).status == 200


# Random text where a client puts it: query values of the read routes and the
# path segments of every route with parameters.
TEXT = st.text(max_size=30) | st.sampled_from(["", "-1", "0", "0:", "0:0-0", "1:b0", "99" * 12])
# Cursors near the real ones ("<partition>:<offset, stream id or b<offset>>").
# And near the listing over every function's (base64url JSON of a position).
CURSORS = (
    TEXT
    | st.builds(
        "{}:{}".format, st.integers(-2, 3), st.from_regex(r"[0-9b(x.-]{0,24}", fullmatch=True)
    )
    | st.builds(
        lambda parts: base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode(),
        st.lists(
            st.sampled_from(["k", "b"]) | st.integers(-1, 2**64) | st.text(max_size=4),
            max_size=5,
        ),
    )
)
GETS = ["/v1/jobs", "/v1/jobs/{id}", "/v1/dead-letters/{function}", "/v1/limits/{function}",
        "/v1/metrics/workspace/{workspace}", "/api/metrics"]  # fmt: skip


@pytest.mark.parametrize("path", GETS)
def test_no_query_or_path_segment_gets_a_server_error(
    shared_server: RedisServer, path: str
) -> None:
    runner = asyncio.Runner()
    redis = connect(RedisSettings(url=shared_server.url))
    api = runner.run(start_api(redis, shared_server.url))
    try:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            segment=TEXT.filter(lambda s: s not in (".", "..")),
            # The names a route reads, often valid, so that the others get past them.
            query=st.fixed_dictionaries(
                {"state": st.sampled_from([*STATES, "", "nope"]), "cursor": CURSORS},
                optional={
                    "function": st.sampled_from(["tasks", "batch-tasks", "nope", ""]),
                    "workspace": st.sampled_from(["acme", "other"]) | TEXT,
                    "limit": TEXT,
                },
            ),
            who=st.sampled_from(["admin", "acme"]),
        )
        # A decoded newline once slipped past every route to aiohttp's plain 404.
        @example(segment="\n{", query={"function": "", "state": "", "cursor": ""}, who="admin")
        def check(segment: str, query: dict[str, str], who: str) -> None:
            runner.run(answer(api, path, segment, query, who))

        check()
    finally:
        runner.run(api.http.close())
        runner.run(redis.aclose())
        runner.close()


async def answer(api: Api, path: str, segment: str, query: dict[str, str], who: str) -> None:
    url = path.replace("{id}", "{s}").replace("{function}", "{s}").replace("{workspace}", "{s}")
    url = url.replace("{s}", urllib.parse.quote(segment, safe=""))
    got = await api.http.get(url, params=query, headers=api.auth(who))
    assert got.status < 500, (url, query, await got.text())
    if got.status >= 400:
        await problem_of(got)
