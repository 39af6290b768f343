"""Cron expressions: parsing, next runs, and wall-clock times across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.runtime import InvalidSchedule
from sluice.runtime.scheduler.cron import Cron

BERLIN = ZoneInfo("Europe/Berlin")


def runs(cron: Cron, start: datetime, count: int) -> list[datetime]:
    out, at = [], start
    for _ in range(count):
        at = cron.next_after(at)
        out.append(at)
    return out


def test_nightly_at_three_in_berlin_keeps_its_wall_clock_time_across_both_changes() -> None:
    cron = Cron("0 3 * * *", "Europe/Berlin")
    spring = runs(cron, datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    assert [r.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for r in spring] == [
        "03-28 03:00 CET",
        "03-29 03:00 CEST",
        "03-30 03:00 CEST",
        "03-31 03:00 CEST",
    ]
    # The night the clocks jump is an hour shorter.
    assert spring[1] - spring[0] == timedelta(hours=23)
    autumn = runs(cron, datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert [r.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for r in autumn] == [
        "10-25 03:00 CET",
        "10-26 03:00 CET",
    ]
    assert autumn[0] - datetime(2026, 10, 24, 1, tzinfo=UTC) == timedelta(hours=25)


def test_a_skipped_time_runs_when_the_clocks_jump_and_a_doubled_one_once() -> None:
    cron = Cron("30 2 * * *", "Europe/Berlin")
    (skipped,) = runs(cron, datetime(2026, 3, 28, 12, tzinfo=UTC), 1)
    assert skipped.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    doubled = runs(cron, datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert [r.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for r in doubled] == [
        "10-25 02:30 CEST",
        "10-26 02:30 CET",
    ]


def test_fields_ranges_steps_names_and_either_day_field() -> None:
    start = datetime(2026, 11, 23, 10, 7, tzinfo=UTC)  # a Monday
    assert runs(Cron("*/15 * * * *"), start, 3) == [
        start.replace(minute=15),
        start.replace(minute=30),
        start.replace(minute=45),
    ]
    weekdays = runs(Cron("0 9 * * mon-fri"), datetime(2026, 11, 27, 10, tzinfo=UTC), 2)
    assert [r.strftime("%a") for r in weekdays] == ["Mon", "Tue"]
    # Day of month OR day of week when both are given: the 1st, and Sundays.
    either = runs(Cron("0 0 1 * 0"), datetime(2026, 11, 23, tzinfo=UTC), 3)
    assert [r.day for r in either] == [29, 1, 6]
    assert Cron("0 0 * * 7").next_after(start).strftime("%a") == "Sun"


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("0 3 * *", "UTC", "5 fields"),
        ("61 * * * *", "UTC", "outside 0-59"),
        ("0 3 * * funday", "UTC", "cannot read"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone"),
        ("0 0 30 feb *", "UTC", "never runs"),
    ],
)
def test_bad_expressions_are_refused_clearly(expression: str, zone: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        Cron(expression, zone).next_after(datetime(2026, 1, 1, tzinfo=UTC))


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]),
)
def test_the_next_run_is_later_and_on_a_matching_wall_clock_minute(
    naive: datetime, zone: str
) -> None:
    start = naive.replace(tzinfo=UTC)
    run = Cron("*/20 1-3 * * *", zone).next_after(start)
    assert run > start
    wall = run.astimezone(ZoneInfo(zone))
    # Either a listed minute, or the instant a skipped one moved to.
    assert (wall.minute in (0, 20, 40) and wall.hour in (1, 2, 3)) or wall.minute in (0, 30)
