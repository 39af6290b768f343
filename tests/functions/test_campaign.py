"""`campaign.launch` and `campaign.cancel`: the jobs a campaign leaves in Redis, their
due times across a change of the clocks, a retried launch, a cancel half way
through, and contacts fetched in pages from a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from functions import FUNCTIONS
from functions.campaign import cancel_campaign, launch_campaign
from sluice.runtime import Client, Function
from sluice.runtime.client.current import worker_context
from sluice.runtime.registry import Registry
from sluice.runtime.settings import Settings, from_env
from sluice.runtime.testing import Completed, Outcome, Rejected, call
from sluice.streams.connection import Redis
from sluice.streams.keys import PartitionKeys
from sluice.streams.tagged import TagCounts
from tests.redis_server import RedisServer
from tests.runtime.helpers import hosting, total_counts, wait_until

REGISTRY = Registry(FUNCTIONS)
BERLIN = ZoneInfo("Europe/Berlin")


async def run(
    redis: Redis, fn: Function[Any], data: Any, settings: Settings | None = None
) -> Outcome:
    """Call `fn` as a worker would, its `current_client()` on `redis`."""
    context = worker_context(Client(redis, REGISTRY))
    task = asyncio.get_running_loop().create_task(
        call(fn, data, workspace="acme", settings=settings), context=context
    )
    return await task


def next_change(zone: ZoneInfo, after: datetime) -> date:
    """The first day after `after` on which `zone`'s clocks change."""
    day = after.astimezone(zone).date() + timedelta(days=1)
    while _offset(zone, day) == _offset(zone, day + timedelta(days=1)):
        day += timedelta(days=1)
    return day + timedelta(days=1)


def _offset(zone: ZoneInfo, day: date) -> timedelta:
    return datetime(day.year, day.month, day.day, 12, tzinfo=zone).utcoffset() or timedelta()


def contacts(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"c{i}", "name": f"N{i}", "phone": f"+49151{i:08d}", "email": f"c{i}@example.com"}
        for i in range(n)
    ]


async def due_times(redis: Redis, function: str) -> Counter[datetime]:
    scored: Any = await redis.zrange(PartitionKeys(function, 0).delayed, 0, -1, withscores=True)
    return Counter(datetime.fromtimestamp(score / 1000, UTC) for _, score in scored)


async def test_a_campaign_over_three_days_across_a_change_of_the_clocks(
    redis: Redis, long_run: bool
) -> None:
    # 10,000 contacts (30,000 jobs: about 7 s here, launch and cancel) with
    # --long; 1,000 otherwise, which prove the same and keep the suite quick.
    n = 10_000 if long_run else 1_000
    change = next_change(BERLIN, datetime.now(UTC) + timedelta(days=2))
    start = change - timedelta(days=1)
    data = {
        "id": "big",
        "zone": "Europe/Berlin",
        "start": start.isoformat(),
        "steps": [
            {"day": 0, "at": "09:00", "channel": "sms", "text": "Hi {name}, day one"},
            # 02:30 on the night of the change: skipped (spring) or twice (autumn).
            {"day": 1, "at": "02:30", "channel": "email", "subject": "S", "text": "Hi {name}"},
            {"day": 2, "at": "09:00", "channel": "sms", "text": "Hi {name}, day three"},
        ],
        "contacts": contacts(n),
    }
    outcome = await run(redis, launch_campaign, data)
    assert isinstance(outcome, Completed), outcome
    result = outcome.result
    assert (result.published, result.duplicates, result.late, result.unreachable) == (
        3 * n,
        0,
        0,
        0,
    )
    assert result.jobs == {"sms.send": 2 * n, "email.send": n}

    # Wall-clock times in Berlin: 09:00 before the change and 09:00 after it are
    # an hour apart in UTC; 02:30 on the night is the earlier instant (or moved
    # forward by the gap), both `02:30 minus the offset before the change`.
    before, after = _offset(BERLIN, start), _offset(BERLIN, start + timedelta(days=2))
    assert before != after

    def utc(day: date, hour: int, minute: int, offset: timedelta) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - offset

    assert await due_times(redis, "sms.send") == {
        utc(start, 9, 0, before): n,
        utc(start + timedelta(days=2), 9, 0, after): n,
    }
    assert await due_times(redis, "email.send") == {utc(change, 2, 30, before): n}
    job = await Client(redis, REGISTRY).jobs.get("sms.send", "big:2:c7", workspace="acme")
    assert job is not None
    assert (job.data["to"], job.data["body"]) == ("+4915100000007", "Hi N7, day three")
    assert job.tags == ("campaign:big",)

    # A retried launch finds every job and adds none.
    again = await run(redis, launch_campaign, data)
    assert isinstance(again, Completed)
    assert (again.result.published, again.result.duplicates) == (0, 3 * n)
    jobs = Client(redis, REGISTRY).jobs
    assert await jobs.tag_counts("campaign:big", workspace="acme") == {
        "sms.send": TagCounts(delayed=2 * n),
        "email.send": TagCounts(delayed=n),
    }

    cancelled = await run(redis, cancel_campaign, {"id": "big"})
    assert isinstance(cancelled, Completed)
    assert (cancelled.result.cancelled, cancelled.result.running) == (3 * n, 0)
    assert await jobs.tag_counts("campaign:big", workspace="acme") == {}
    assert (await total_counts(redis, "sms.send")).cancelled == 2 * n


async def test_a_campaign_cancelled_after_its_first_day_keeps_what_was_sent(
    redis: Redis, shared_server: RedisServer
) -> None:
    # Day 0's time passed a minute ago (within `late_s`: sent now); days 1 and 2
    # are ahead. Cancelled once day 0 went out, only those messages are left.
    now = datetime.now(BERLIN) - timedelta(minutes=1)
    data = {
        "id": "half",
        "zone": "Europe/Berlin",
        "start": now.date().isoformat(),
        "steps": [
            {"day": d, "at": now.strftime("%H:%M"), "channel": c, "subject": "S", "text": "Hi"}
            for d, c in ((0, "email"), (1, "sms"), (2, "email"))
        ],
        "contacts": contacts(50),
    }
    outcome = await run(redis, launch_campaign, data)
    assert isinstance(outcome, Completed), outcome
    assert outcome.result.published == 150
    channels = [fn for fn in FUNCTIONS if fn.name in ("sms.send", "email.send")]
    environ = {"SLUICE_EMAIL_PROVIDER": "log", "SLUICE_SMS_PROVIDER": "log"}
    async with hosting(shared_server.url, channels, environ, scheduler=True):

        async def day_one_sent() -> bool:
            return (await total_counts(redis, "email.send")).completed == 50

        await wait_until(day_one_sent, 20, what="day 0's emails sent")
    cancelled = await run(redis, cancel_campaign, {"id": "half"})
    assert isinstance(cancelled, Completed)
    assert (cancelled.result.cancelled, cancelled.result.running) == (100, 0)
    jobs = Client(redis, REGISTRY).jobs
    states: Counter[tuple[int, str]] = Counter()
    for step, function in enumerate(("email.send", "sms.send", "email.send")):
        for i in range(50):
            job = await jobs.get(function, f"half:{step}:c{i}", workspace="acme")
            assert job is not None
            states[step, job.state] += 1
    assert states == {(0, "completed"): 50, (1, "cancelled"): 50, (2, "cancelled"): 50}
    assert await jobs.tag_counts("campaign:half", workspace="acme") == {}


@pytest.fixture
async def contacts_server() -> AsyncIterator[str]:
    """Three pages of contacts: the first links the second absolutely, the second
    the third relatively."""
    pages = [contacts(1000)[i : i + 400] for i in range(0, 1000, 400)]

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        link = None
        if n == 0:
            link = str(request.url.with_path("/contacts/1"))
        elif n == 1:
            link = "2?token=x"
        return web.json_response({"contacts": pages[n], "next": link})

    app = web.Application()
    app.router.add_get("/contacts/{n}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/contacts/0"
    await runner.cleanup()


async def test_contacts_are_fetched_in_pages_from_an_allowed_url(
    redis: Redis, contacts_server: str
) -> None:
    data = {
        "id": "paged",
        "zone": "UTC",
        "start": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
        "steps": [{"day": 0, "at": "12:00", "channel": "whatsapp", "text": "Hi {name}"}],
        "contacts_url": contacts_server,
    }
    refused = await run(redis, launch_campaign, data)
    assert isinstance(refused, Rejected)
    assert "127.0.0.1 is a loopback address" in refused.error
    allowed = from_env({"SLUICE_WEBHOOK_ALLOW": "127.0.0.1"})
    outcome = await run(redis, launch_campaign, data, allowed)
    assert isinstance(outcome, Completed), outcome
    assert outcome.result.jobs == {"whatsapp.send": 1000}
    job = await Client(redis, REGISTRY).jobs.get("whatsapp.send", "paged:0:c999", workspace="acme")
    assert job is not None
    assert job.data["text"] == "Hi N999"


async def test_a_contact_without_the_channel_is_skipped_and_bad_input_refused(
    redis: Redis,
) -> None:
    day = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    step = {"day": 0, "at": "12:00", "channel": "sms", "text": "Hi"}
    data = {
        "id": "gaps",
        "zone": "UTC",
        "start": day,
        "steps": [step],
        "contacts": [{"id": "a", "phone": "+15550100"}, {"id": "b", "email": "b@example.com"}],
    }
    outcome = await run(redis, launch_campaign, data)
    assert isinstance(outcome, Completed)
    assert (outcome.result.published, outcome.result.unreachable) == (1, 1)
    for bad, words in (
        ({**data, "zone": "Mars/Olympus"}, "unknown time zone"),
        ({**data, "contacts_url": "https://example.com/c"}, "one of the two"),
        ({**data, "steps": [{**step, "at": "24:00"}]}, "at"),
    ):
        with pytest.raises(Exception, match=words):
            await run(redis, launch_campaign, bad)
