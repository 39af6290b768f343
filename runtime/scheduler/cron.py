"""Cron expressions in a named time zone: the next run after an instant.

Five fields, minute hour day-of-month month day-of-week, each `*`, numbers,
ranges `a-b`, lists `a,b` and steps `*/n` or `a-b/n`; months and weekdays by
name too (`jan`, `mon-fri`); 0 and 7 are Sunday. As in Vixie cron, when both
day fields are restricted a day matching either one runs.

Times are wall-clock times in the zone. Across a DST change: a time the clocks
skip runs at the instant they jump (02:30 on the spring-forward night runs at
03:00); a time that occurs twice runs once, the first time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sluice.runtime.errors import InvalidSchedule

_NAMES = {
    3: {
        m: i
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
# A search for the next run gives up after this many days (a schedule such as
# "30 Feb" never runs).
_HORIZON_DAYS = 366 * 5


class Cron:
    """A parsed cron expression bound to a time zone."""

    __slots__ = (
        "any_dom",
        "any_dow",
        "dom",
        "dow",
        "expression",
        "hours",
        "minutes",
        "months",
        "zone",
    )

    def __init__(self, expression: str, zone: str = "UTC") -> None:
        fields = expression.split()
        if len(fields) != 5:
            raise InvalidSchedule(
                f"cron {expression!r} must have 5 fields: minute hour day month weekday"
            )
        try:
            self.zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(f"unknown time zone {zone!r}") from None
        self.expression = expression
        sets = [_field(expression, i, f) for i, f in enumerate(fields)]
        self.minutes, self.hours, self.dom, self.months, dow = sets
        self.dow = {d % 7 for d in dow}
        # As Vixie cron: a day field starting with "*" (also "*/2") is unrestricted.
        self.any_dom = fields[2].startswith("*")
        self.any_dow = fields[4].startswith("*")

    def next_after(self, instant: datetime) -> datetime:
        """The first run strictly after `instant` (aware), as an aware UTC datetime."""
        for run in self.runs_after(instant):
            return run
        raise InvalidSchedule(f"cron {self.expression!r} never runs")

    def runs_after(self, instant: datetime) -> Iterator[datetime]:
        """The runs strictly after `instant`, in order, as aware UTC datetimes, for
        `_HORIZON_DAYS` at the most: one walk through the days, so the next N runs
        cost N steps, not N searches from each run's day."""
        local = instant.astimezone(self.zone)
        day = local.date()
        last = instant
        for _ in range(_HORIZON_DAYS):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        run = _instant(day, hour, minute, self.zone)
                        # Skipped times all land on the jump: it runs once.
                        if run > last:
                            last = run
                            yield run
            day += timedelta(days=1)

    def _day_matches(self, day: date) -> bool:
        dom = day.day in self.dom
        dow = (day.isoweekday() % 7) in self.dow
        if self.any_dom or self.any_dow:
            return dom and dow
        return dom or dow


def _instant(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock time in `zone` names: the first of two in a fold,
    the end of the gap for one the clocks skip."""
    wall = datetime.combine(day, time(hour, minute), tzinfo=zone)
    instant = wall.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
        # Skipped: fold=0 read it with the offset from before the jump, which
        # lands after the jump; the jump itself is the hour start it falls in.
        jumped = instant.astimezone(zone)
        return jumped.replace(minute=0).astimezone(UTC)
    return instant


def _field(expression: str, index: int, text: str) -> set[int]:
    low, high = _BOUNDS[index]
    names = _NAMES.get(index, {})
    values: set[int] = set()
    for part in text.lower().split(","):
        spec, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if spec == "*":
                first, last = low, high
            else:
                a, _, b = spec.partition("-")
                first = names[a] if a in names else int(a)
                last = (names[b] if b in names else int(b)) if b else (high if step_text else first)
        except ValueError:
            raise InvalidSchedule(f"cron {expression!r}: cannot read {part!r}") from None
        if step < 1 or not low <= first <= last <= high:
            raise InvalidSchedule(f"cron {expression!r}: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return values
