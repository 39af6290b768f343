"""Listing a state's jobs over every function (`Jobs.page(None, ...)`): newest
first, page by page behind an opaque cursor, and a malformed cursor refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.runtime import Client, Jobs
from sluice.runtime.errors import InvalidCursor
from sluice.runtime.registry import load
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.listing import Listable
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE


async def every_page(jobs: Jobs, state: Listable, limit: int, **filters: str) -> list[str]:
    ids: list[str] = []
    cursor = ""
    while True:
        page = await jobs.page(None, state, cursor=cursor, limit=limit, **filters)
        ids += [j.id for j in page.jobs]
        if not page.cursor:
            return ids
        cursor = page.cursor


async def test_delayed_jobs_of_every_function_are_listed_newest_first(redis: Redis) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    names = ["tasks", "batch-tasks", "window-tasks"]
    published = [
        await client.publish(
            names[i % 3], workspace=f"ws{i % 4}", data={"n": i}, delay_ms=60_000 + 1_000 * i
        )
        for i in range(9)
    ]
    newest_first = [r.id for r in reversed(published)]
    for limit in (1, 2, 4, 100):
        assert await every_page(jobs, "delayed", limit) == newest_first
    ws1 = [r.id for i, r in enumerate(published) if i % 4 == 1]
    assert await every_page(jobs, "delayed", 2, workspace="ws1") == ws1[::-1]


async def test_jobs_due_at_the_same_time_are_each_listed_once(redis: Redis) -> None:
    """Ties of one due time, in one partition and across functions, span pages."""
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    at = datetime.now(UTC) + timedelta(hours=1)
    ids = [
        (await client.publish(name, workspace="acme", data={"n": i}, run_at=at)).id
        for name in ("tasks", "window-tasks")
        for i in range(5)
    ]
    for limit in (1, 2, 3):
        listed = await every_page(jobs, "delayed", limit)
        assert sorted(listed) == sorted(ids)


async def test_waiting_jobs_list_the_streams_newest_first_then_the_backlogs(redis: Redis) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    share = registry.share("window-tasks")
    flood = [
        (await client.publish("window-tasks", workspace="acme", data={"n": i})).id
        for i in range(share + 3)
    ]
    other = (await client.publish("tasks", workspace="acme", data={"n": 0})).id
    listed = await every_page(jobs, "waiting", 2)
    assert sorted(listed) == sorted([*flood, other])
    # The three past the workspace's share wait in its backlog: listed last, in order.
    assert listed[-3:] == flood[-3:]
    in_stream = listed[:-3]
    assert [i for i in in_stream if i in flood] == flood[:share][::-1]


def test_a_malformed_cursor_of_the_listing_over_every_function_is_invalid_cursor(
    shared_server: RedisServer,
) -> None:
    """Any text, or any well-formed position with values out of reach: a page, or
    `InvalidCursor`, never another error."""
    runner = asyncio.Runner()
    redis = connect(RedisSettings(url=shared_server.url))
    jobs = Jobs(redis, load(SAMPLE))
    try:
        positions = st.builds(
            lambda parts: base64.urlsafe_b64encode(json.dumps(parts).encode()).decode(),
            st.lists(
                st.sampled_from(["k", "b"])
                | st.integers(-1, 2**64 + 1)
                | st.text(max_size=6)
                | st.none(),
                max_size=6,
            ),
        )

        @settings(max_examples=200, deadline=None)
        @given(
            state=st.sampled_from(get_args(Listable)),
            cursor=st.text(max_size=16) | positions,
        )
        def check(state: Listable, cursor: str) -> None:
            with contextlib.suppress(InvalidCursor):
                runner.run(jobs.page(None, state, cursor=cursor, limit=2))

        check()
        for cursor in ("abc", "0:", "0:b1", "WyJiIiw5OTk5LDBd", "WyJrIiwtMSwwLCIiLCIiXQ=="):
            with pytest.raises(InvalidCursor, match="cursor"):
                runner.run(jobs.page(None, "delayed", cursor=cursor))
    finally:
        runner.run(redis.aclose())
        runner.close()
