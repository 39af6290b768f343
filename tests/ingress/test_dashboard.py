"""The dashboard in a real browser (Debian's headless chromium, driven by Playwright,
one browser for the module): each action's effect, the job detail, the banner
while Redis is frozen, a 400 px screen; and the admin routes it reads."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from sluice.runtime import DeadLetters, Jobs
from sluice.streams.connection import Redis, RedisSettings, connect
from tests.ingress.conftest import Api, registry, start_api
from tests.redis_server import RedisServer
from tests.runtime.helpers import read_ledger, wait_until, worker_in_process

CHROMIUM = "/usr/bin/chromium"
# As the machine's own probe starts it: no sandbox as root, no background
# connections on a closed network.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield launched
        await launched.close()


async def open_board(browser: Browser, api: Api, **context: Any) -> tuple[Page, list[str]]:
    """The dashboard opened with the admin key, confirmations accepted, and the
    errors the page reports."""
    page = await (await browser.new_context(**context)).new_page()
    await page.bring_to_front()  # the browser's other pages do not hold the focus
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(str(api.http.make_url("/admin/queues")))
    await page.fill("#key", api.keys["admin"])
    await page.click("#login button")
    await page.locator("#functions tbody tr", has_text="tasks").first.wait_for()
    await expect(page.locator("#login")).to_be_hidden()
    return page, problems


async def open_function(page: Page, function: str, state: str) -> None:
    await page.locator("#functions button", has_text=function).first.click()
    await page.click(f"#tab-{state}")
    await expect(page.locator("#tab-" + state)).to_have_attribute("aria-selected", "true")


async def dead_letters(api: Api, redis: Redis, url: str, failing: list[dict[str, Any]]) -> None:
    dead = DeadLetters(redis, registry())
    async with worker_in_process(url, "tasks"):
        assert (await api.post("/v1/events/tasks", failing)).status == 202

        async def all_dead() -> bool:
            return len(await dead.read("tasks")) == len(failing)

        await wait_until(all_dead, what="the dead letters")


async def test_actions_cancel_replay_and_pause_show_their_outcome_and_take_effect(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path, tmp_path: Path,
    browser: Browser,
) -> None:  # fmt: skip
    failing = tmp_path / "failing"
    failing.touch()
    await dead_letters(api, redis, shared_server.url, [
        {"workspace": "acme", "id": f"bad-{i}", "data": {"n": i, "mode": "raise",
                                                          "fail_while": str(failing)}}
        for i in range(2)
    ])  # fmt: skip
    later = {"workspace": "acme", "data": {"n": 9}, "id": "later-1", "delay_ms": 3_600_000}
    assert (await api.post("/v1/events/tasks", later)).status == 202
    schedule = {"workspace": "acme", "data": {"n": 1}, "every_ms": 3_600_000}
    answer = await api.http.put("/v1/schedules/tasks/hourly", json=schedule,
                                headers=api.auth("admin"))  # fmt: skip
    assert answer.status == 200
    jobs = Jobs(redis, registry())
    page, problems = await open_board(browser, api)

    # Cancel a delayed job: its state is cancelled, and the page says so.
    await open_function(page, "tasks", "delayed")
    row = page.locator("#jobs tbody tr", has_text="later-1")
    await row.locator("button", has_text="Cancel").click()
    await expect(page.locator("#outcome")).to_contain_text("later-1 is now cancelled")
    record = await jobs.get("tasks", "later-1", workspace="acme")
    assert record is not None
    assert record.state == "cancelled"
    await expect(row).to_have_count(0)

    # Replay one dead letter: it runs (and now succeeds).
    failing.unlink()
    await open_function(page, "tasks", "dead")
    await expect(page.locator("#jobs tbody tr")).to_have_count(2)
    async with worker_in_process(shared_server.url, "tasks"):
        row = page.locator("#jobs tbody tr", has_text="bad-0")
        await row.locator("button", has_text="Replay").click()
        await expect(page.locator("#outcome")).to_contain_text("1 dead job(s) queued again")

        async def ran() -> bool:
            return len(read_ledger(ledger)) == 1

        await wait_until(ran, what="the replayed job run")
    await expect(page.locator("#jobs tbody tr")).to_have_count(1)

    # Pause the schedule.
    await page.click("nav button[data-view=schedules]")
    row = page.locator("#schedules tbody tr", has_text="hourly")
    await row.locator("button", has_text="Pause").click()
    await expect(page.locator("#outcome")).to_contain_text("Schedule hourly paused")
    shown = await api.http.get("/v1/schedules/tasks/hourly?workspace=acme",
                               headers=api.auth("admin"))  # fmt: skip
    assert (await shown.json())["paused"] is True
    await expect(row).to_contain_text("(paused)")

    assert problems == []

    # A refused action is shown with the problem's detail, never silently.
    await page.click("nav button[data-view=queues]")
    await open_function(page, "tasks", "dead")
    problem = {"status": 409, "title": "Conflict", "detail": "refused here"}
    await page.route("**/replay", lambda route: route.fulfill(status=409, json=problem))
    await page.locator("#jobs tbody tr button", has_text="Replay").click()
    await expect(page.locator("#outcome.bad")).to_contain_text("Replay failed: 409: refused here")
    # Chromium's own line for the 409, and nothing else.
    assert [p for p in problems if "status of 409" not in p] == []

    # The selected letters deleted for good, in their workspace.
    await page.unroute("**/replay")
    await page.locator("#jobs tbody tr", has_text="bad-1").locator("input").check()
    await page.locator("#bulk button", has_text="Delete 1 selected").click()
    await expect(page.locator("#outcome.good")).to_contain_text("Delete: 1 job(s) done")
    assert (await jobs.counts("tasks")).dead == 0


async def test_the_job_detail_shows_input_errors_and_local_times_and_fits_400_px(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path, browser: Browser
) -> None:
    bad = {"workspace": "acme", "id": "bad-1", "data": {"n": 1, "mode": "raise"}}
    await dead_letters(api, redis, shared_server.url, [bad])
    later = {"workspace": "acme", "data": {"n": 9, "note": "hello"}, "id": "later-1",
             "delay_ms": 3_600_000}  # fmt: skip
    assert (await api.post("/v1/events/tasks", later)).status == 202
    record = await Jobs(redis, registry()).get("tasks", "later-1", workspace="acme")
    assert record is not None
    # A job whose first attempt failed, its next an hour away.
    again = {"workspace": "acme", "id": "again-1", "data": {"n": 3, "mode": "retry",
             "retry_after_ms": 3_600_000, "fail_times": 1}}  # fmt: skip
    async with worker_in_process(shared_server.url, "retry-tasks"):
        assert (await api.post("/v1/events/retry-tasks", again)).status == 202

        async def failed_once() -> bool:
            job = await Jobs(redis, registry()).get("retry-tasks", "again-1", workspace="acme")
            return job is not None and job.attempts == 1

        await wait_until(failed_once, what="its first attempt failed")
    page, problems = await open_board(
        browser, api, timezone_id="Asia/Kolkata", locale="en-GB",
        viewport={"width": 400, "height": 800},
    )  # fmt: skip
    await open_function(page, "tasks", "delayed")
    await page.locator("#jobs button", has_text="later-1").click()
    job = page.locator("#job")
    await expect(job.locator("#job-data")).to_contain_text('"note": "hello"')
    due = datetime.fromtimestamp(record.due_ms / 1000, ZoneInfo("Asia/Kolkata"))
    await expect(job.locator(".fact-due")).to_contain_text(due.strftime("%d/%m/%Y, %H:%M:%S"))
    await expect(job.locator(".fact-due")).to_contain_text("in 60 min")
    await expect(job).not_to_contain_text(str(record.due_ms))
    # A dead job: its attempts' errors (tasks have one attempt).
    await open_function(page, "tasks", "dead")
    await page.locator("#jobs button", has_text="bad-1").click()
    await expect(job.locator("#job-errors li")).to_have_count(1)
    await expect(job.locator("#job-errors li")).to_contain_text("task 1 refused")
    # Jobs with failed attempts waiting for their next, under their own tab.
    await expect(page.locator("#tab-retrying")).to_have_text("failed attempts")
    await open_function(page, "retry-tasks", "retrying")
    await expect(page.locator("#jobs tbody tr", has_text="again-1")).to_contain_text("retry")
    await open_function(page, "tasks", "dead")
    # Keyboard: arrows move between the state tabs, Enter opens one; a refresh
    # leaves the focus where it was.
    await page.focus("#tab-retrying")
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator("#tab-delayed")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#tab-delayed")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#jobs tbody tr", has_text="later-1")).to_have_count(1)
    await expect(page.locator("#tab-delayed")).to_be_focused()
    run_now = page.locator("#jobs tbody tr", has_text="later-1").locator(
        "button", has_text="Run now"
    )
    await run_now.focus()
    updated = await page.locator("#status").inner_text()
    await expect(page.locator("#status")).not_to_have_text(updated)
    assert await page.evaluate("document.activeElement.textContent") == "Run now"
    await expect(run_now).to_be_focused()
    # Nothing wider than the screen, in any view.
    for view in ("queues", "workers", "schedules", "limits"):
        await page.click(f"nav button[data-view={view}]")
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow == 0, view
    assert problems == []


async def test_a_banner_shows_while_redis_is_frozen_and_goes_when_it_answers(
    server: RedisServer, browser: Browser
) -> None:
    redis = connect(
        RedisSettings(url=server.url, connect_timeout_s=0.3, socket_timeout_s=0.5, retries=1)
    )
    api = await start_api(redis, server.url)
    try:
        page, problems = await open_board(browser, api)
        banner = page.locator("#banner")
        await expect(banner).to_be_hidden()
        server.pause()
        try:
            await expect(banner).to_be_visible(timeout=10_000)
            await expect(banner).to_contain_text("503")
            await expect(banner).to_contain_text("last good refresh")
        finally:
            server.resume()
        await expect(banner).to_be_hidden(timeout=10_000)
        # A key no longer known (`sluice dev` restarted): back to the form, saying so.
        await page.evaluate("state.key = 'sk_unknown'")
        await expect(page.locator("#login")).to_be_visible()
        await expect(page.locator("#login-error")).to_contain_text("The key was refused (401")
        # Chromium's own lines for the 503s and the 401, and nothing else.
        assert [p for p in problems if not re.search("status of (503|401)", p)] == []
    finally:
        await api.http.close()
        await redis.aclose()


async def test_workers_history_and_purge_routes(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    admin = api.auth("admin")
    started = time.time()
    await dead_letters(api, redis, shared_server.url, [
        {"workspace": "acme", "id": f"bad-{i}", "data": {"n": i, "mode": "raise"}}
        for i in range(2)
    ])  # fmt: skip
    async with worker_in_process(shared_server.url, "tasks"):
        ok = [{"workspace": "acme", "data": {"n": i}} for i in range(3)]
        assert (await api.post("/v1/events/tasks", ok)).status == 202

        async def ran() -> bool:
            return len(read_ledger(ledger)) == 3

        await wait_until(ran, what="three jobs run")
        totals: dict[str, Any] = {}

        async def flushed() -> bool:
            answer = await api.http.get("/v1/metrics?function=tasks", headers=admin)
            totals.update((await answer.json())["functions"]["tasks"])
            return bool(totals["succeeded"] == 3)

        await wait_until(flushed, what="the metrics flushed")
        # Settled (counted only once settled): the worker holds nothing.
        answer = await api.http.get("/v1/workers?function=tasks", headers=admin)
        assert answer.status == 200
        (worker,) = (await answer.json())["functions"]["tasks"]
        assert worker["pending"] == 0
        assert 0 <= worker["idle_ms"] < 10_000

    answer = await api.http.get("/v1/metrics/history?function=tasks", headers=admin)
    minutes = (await answer.json())["functions"]["tasks"]
    assert len(minutes) == 60
    assert minutes[-1]["at_ms"] // 60_000 == int(time.time()) // 60
    assert minutes[0]["at_ms"] // 60_000 == int(time.time()) // 60 - 59
    assert sum(m["processed"] for m in minutes) == totals["processed"]
    assert sum(m["failed"] for m in minutes) == totals["failed"] > 0
    assert all(m["at_ms"] >= (int(started) // 60 - 1) * 60_000 for m in minutes if m["processed"])
    purge = {"ids": ["bad-0"], "workspace": "acme"}
    answer = await api.http.post("/v1/dead-letters/tasks/purge", json=purge, headers=admin)
    assert (await answer.json()) == {"purged": 1}
    assert (await Jobs(redis, registry()).counts("tasks")).dead == 1


async def test_the_docs_page_shows_schemas_and_sends_the_example_publish(
    api: Api, browser: Browser
) -> None:
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page.goto(str(api.http.make_url("/docs")))
    # The input types are listed with their fields.
    await expect(page.locator("section.models")).to_contain_text("Sms")
    await page.locator("button.authorize").click()
    await page.locator(".modal-ux input").fill(api.keys["acme"])
    await page.locator(".modal-ux button.authorize").click()
    await page.locator(".modal-ux button.close-modal").click()
    sms = page.locator(".opblock", has_text="/v1/events/sms.send")
    await sms.locator(".opblock-summary").click()
    # Filled with sms.send's declared example, which is accepted as it is.
    await expect(sms.locator("textarea.body-param__text")).to_contain_text("+15550100")
    await sms.locator("button.execute").click()
    status = sms.locator(".live-responses-table tbody .response-col_status")
    await expect(status).to_contain_text("202")
    assert problems == []
