"""`report.generate` end to end: jobs run by a real worker, their metrics flushed to
Redis, two reports in a row (the second covers only what came after the first),
read back as CSV; and the period's arithmetic (a reset, p95) on its own."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

from functions import FUNCTIONS
from functions.report import generate_report
from sluice.runtime import Client, Metrics, Usage, period
from sluice.runtime.client.current import worker_context
from sluice.runtime.registry import Registry
from sluice.runtime.settings import from_env
from sluice.runtime.testing import Completed, Outcome, Rejected, call
from sluice.streams.connection import Redis
from tests.redis_server import RedisServer
from tests.runtime.helpers import hosting, wait_until

REGISTRY = Registry(FUNCTIONS)
SMS = [fn for fn in FUNCTIONS if fn.name == "sms.send"]


async def report(redis: Redis, directory: Path) -> Outcome:
    settings = from_env({"SLUICE_REPORTS_DIR": str(directory)})
    return await asyncio.get_running_loop().create_task(
        call(generate_report, {}, workspace="acme", settings=settings),
        context=worker_context(Client(redis, REGISTRY)),
    )


async def send(redis: Redis, n: int, total: int) -> None:
    """Publish `n` SMS for acme and wait until the metrics show `total`."""
    client = Client(redis, REGISTRY)
    for i in range(n):
        await client.publish("sms.send", workspace="acme", data={"to": "+15550100", "body": f"{i}"})

    async def flushed() -> bool:
        return (await Metrics(redis, REGISTRY).read("sms.send", "acme")).processed == total

    await wait_until(flushed, 10, what=f"{total} SMS in the metrics")


def rows(path: str) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


async def test_two_reports_each_cover_their_own_period(
    redis: Redis, shared_server: RedisServer, tmp_path: Path
) -> None:
    async with hosting(shared_server.url, SMS, {"SLUICE_SMS_PROVIDER": "log"}):
        await send(redis, 5, 5)
        first = await report(redis, tmp_path)
        await send(redis, 3, 8)
        second = await report(redis, tmp_path)
    assert isinstance(first, Completed), first
    assert first.result.path.startswith(str(tmp_path / "acme" / "report-"))
    (row,) = rows(first.result.path)
    assert (row["workspace"], row["function"], row["period_start"]) == ("acme", "sms.send", "")
    assert (row["processed"], row["succeeded"], row["failed"], row["dead"]) == ("5", "5", "0", "0")
    assert float(row["p95_ms"]) > 0
    assert row["period_end"] == first.result.end.isoformat()

    assert isinstance(second, Completed), second
    (row,) = rows(second.result.path)
    assert row["period_start"] == first.result.end.isoformat()
    assert (row["processed"], row["succeeded"]) == ("3", "3")
    assert second.result.rows == 1


async def test_a_directory_that_cannot_be_written_rejects_the_job(
    redis: Redis, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    outcome = await report(redis, tmp_path / "file")
    assert isinstance(outcome, Rejected)
    assert "the report" in outcome.error


def test_a_period_is_the_difference_of_two_readings_and_a_reset_starts_over() -> None:
    before = Usage({"processed": 100, "batches": 100, "time_ms": 500, "rate_limited": 7}, [0] * 16)
    # 20 calls since: 19 of at most 1 ms, one of at most 250 ms; 3 jobs held back.
    histogram = [119, *[0] * 6, 1, *[0] * 8]
    now = Usage({"processed": 120, "batches": 120, "time_ms": 700, "rate_limited": 10}, histogram)
    line = period("sms.send", now, before)
    assert (line.processed, line.calls, line.rate_limited, line.avg_ms) == (20, 20, 3, 10.0)
    assert line.p95_ms == 1.0
    # Reset meanwhile (fewer than before): all there is now is the period's.
    reset = Usage({"processed": 4, "batches": 4, "time_ms": 8, "rate_limited": 0}, [4, *[0] * 15])
    assert period("sms.send", reset, before).processed == 4
