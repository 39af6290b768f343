"""`run_at` in a named zone: RFC 9557 suffixes and local times, across Berlin's DST
changes of 2026 (29 March: 02:00 -> 03:00; 25 October: 03:00 -> 02:00)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from sluice.runtime import Client, InvalidSchedule, Jobs, LocalTime
from sluice.runtime.client.timing import When
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.runtime.helpers import SAMPLE

BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("run_at", "due"),
    [
        # An ordinary day: Berlin is +01:00 in winter, +02:00 in summer.
        ("2026-12-24T09:00:00[Europe/Berlin]", "2026-12-24T08:00"),
        ("2026-12-24T09:00:00+01:00[Europe/Berlin]", "2026-12-24T08:00"),
        ("2026-12-24T09:00:00+01:00[!Europe/Berlin]", "2026-12-24T08:00"),
        ("2026-12-24T09:00:00Z[Europe/Berlin]", "2026-12-24T09:00"),
        (LocalTime("2026-07-01T09:00", "Europe/Berlin"), "2026-07-01T07:00"),
        # Spring forward: 02:30 never happens; it is moved forward by the gap (03:30 CEST).
        ("2026-03-29T02:30:00[Europe/Berlin]", "2026-03-29T01:30"),
        (LocalTime("2026-03-29T02:30", "Europe/Berlin"), "2026-03-29T01:30"),
        ("2026-03-29T03:00:00[Europe/Berlin]", "2026-03-29T01:00"),
        # Fall back: 02:30 happens twice; the earlier (CEST) unless the offset says.
        ("2026-10-25T02:30:00[Europe/Berlin]", "2026-10-25T00:30"),
        (LocalTime("2026-10-25T02:30", "Europe/Berlin"), "2026-10-25T00:30"),
        ("2026-10-25T02:30:00+02:00[Europe/Berlin]", "2026-10-25T00:30"),
        ("2026-10-25T02:30:00+01:00[Europe/Berlin]", "2026-10-25T01:30"),
        # A Python datetime in the zone follows the same rule (fold=0).
        (datetime(2026, 3, 29, 2, 30, tzinfo=BERLIN), "2026-03-29T01:30"),
        (datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN), "2026-10-25T00:30"),
    ],
)
async def test_run_at_in_a_zone_resolves_and_the_receipt_says_when(
    redis: Redis, run_at: When, due: str
) -> None:
    receipt = await Client(redis, load(SAMPLE)).publish(
        "tasks", workspace="tz", data={"n": 1}, run_at=run_at
    )
    assert receipt.due == utc(due)


async def test_a_receipt_without_run_at_has_no_due(redis: Redis) -> None:
    client = Client(redis, load(SAMPLE))
    assert (await client.publish("tasks", workspace="tz", data={"n": 1})).due is None
    later = await client.publish("tasks", workspace="tz", data={"n": 1}, delay_ms=60_000)
    assert later.due is None


async def test_a_zoned_job_of_a_coming_dst_day_waits_for_the_resolved_instant(
    redis: Redis,
) -> None:
    """A 2026 change may be past when the test runs (the job then runs at once);
    2027's (28 March, 31 October) are ahead, so the job waits for the instant chosen."""
    registry = load(SAMPLE)
    client, jobs = Client(redis, registry), Jobs(redis, registry)
    for run_at, due in (
        (LocalTime("2027-03-28T02:30", "Europe/Berlin"), "2027-03-28T01:30"),
        ("2027-10-31T02:30:00[Europe/Berlin]", "2027-10-31T00:30"),
    ):
        receipt = await client.publish(
            "tasks", workspace="tz", data={"n": 1}, run_at=run_at, expires_at=run_at
        )
        record = await jobs.get("tasks", receipt.id)
        assert record is not None
        assert record.state == "delayed"
        assert record.due_ms == utc(due).timestamp() * 1000
    moved = await client.publish("tasks", workspace="tz", data={"n": 1}, delay_ms=3_600_000)
    await jobs.reschedule("tasks", moved.id, run_at="2027-12-24T09:00[Europe/Berlin]")
    record = await jobs.get("tasks", moved.id)
    assert record is not None
    assert record.due_ms == utc("2027-12-24T08:00").timestamp() * 1000


@pytest.mark.parametrize(
    ("run_at", "field", "message"),
    [
        ("2026-12-24T09:00:00[Mars/Olympus]", "run_at", "unknown time zone 'Mars/Olympus'"),
        ("2026-12-24T09:00:00[../../etc/passwd]", "run_at", "unknown time zone"),
        (
            "2026-10-25T02:30:00+03:00[Europe/Berlin]",
            "run_at",
            "the offset is not Europe/Berlin's at that time (+02:00)",
        ),
        ("2026-12-24T09:00:00[Europe/Berlin][u-ca=hebrew]", "run_at", "not an RFC 3339"),
        ("tomorrow[Europe/Berlin]", "run_at", "not an RFC 3339 date-time"),
        (LocalTime("2026-12-24T09:00", "Nowhere/Land"), "run_at.zone", "unknown time zone"),
        (LocalTime("24 Dec", "Europe/Berlin"), "run_at.local", "not an RFC 3339"),
        (LocalTime("2026-12-24T09:00Z", "Europe/Berlin"), "run_at.local", "has an offset"),
        ("2026-12-24T09:00:00", "run_at", "has no time zone"),
    ],
)
async def test_a_bad_zone_or_time_is_an_invalid_schedule_naming_the_field(
    redis: Redis, run_at: When, field: str, message: str
) -> None:
    with pytest.raises(InvalidSchedule, match=re.escape(message)) as caught:
        await Client(redis, load(SAMPLE)).publish(
            "tasks", workspace="tz", data={"n": 1}, run_at=run_at
        )
    assert caught.value.field == field
