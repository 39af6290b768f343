"""The dashboard in a real browser (Debian's headless chromium, driven by Playwright):
it loads without console errors, shows the seeded counts, and a replay click works."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from runtime import DeadLetters, Jobs
from streams.connection import Redis
from tests.ingress.conftest import Api, registry
from tests.redis_server import RedisServer
from tests.runtime.helpers import wait_until, worker_in_process

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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield launched
        await launched.close()


async def open_page(browser: Browser, api: Api, path: str) -> tuple[Page, list[str]]:
    """The page at `path` with the admin key typed in, and the errors it reports."""
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await page.goto(str(api.http.make_url(path)))
    await page.fill("#key", api.keys["admin"])
    return page, problems


async def test_the_dashboard_shows_counts_and_replays_a_dead_letter(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path, browser: Browser
) -> None:
    failing = [{"workspace": "acme", "data": {"n": i, "mode": "raise"}} for i in range(2)]
    later = {"workspace": "acme", "data": {"n": 9}, "id": "later-1", "delay_ms": 3_600_000}
    dead = DeadLetters(redis, registry())
    async with worker_in_process(shared_server.url, "tasks"):
        assert (await api.post("/v1/events/tasks", failing)).status == 202
        assert (await api.post("/v1/events/tasks", later)).status == 202

        async def both_dead() -> bool:
            return len(await dead.read("tasks")) == 2

        await wait_until(both_dead, what="two dead letters")

    page, problems = await open_page(browser, api, "/admin")
    await page.click("#login button")
    row = page.locator("#functions tbody tr", has_text="tasks").first
    await row.wait_for()
    cells = await row.locator("td").all_inner_texts()
    # function, waiting, active, delayed, completed, failed, dead, ...
    assert cells[0] == "tasks"
    assert (cells[3], cells[6]) == ("1", "2")
    assert await page.locator("#delayed tbody tr", has_text="later-1").count() == 1
    letters = page.locator("#dead tbody tr")
    assert await letters.count() == 2
    await letters.first.locator("button", has_text="Replay").click()

    async def replayed() -> bool:
        return (await Jobs(redis, registry()).counts("tasks")).dead == 1

    await wait_until(replayed, what="the replay clicked")
    await expect(page.locator("#dead tbody tr")).to_have_count(1)
    # Job lookup by id: one its publisher gave, with its workspace.
    await page.fill("#job-id", "later-1")
    await page.fill("#job-workspace", "acme")
    await page.click("#lookup button")
    await expect(page.locator("#job")).to_contain_text('"state": "delayed"')
    assert problems == []


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
