"""When a job is due: a delay from now or an absolute time, checked before anything is written.

An absolute time is an aware datetime, RFC 3339 text, RFC 9557 text with a
time zone suffix (`2026-12-24T09:00:00[Europe/Berlin]`; with an offset too,
`...+01:00[Europe/Berlin]`, the offset must be the zone's at that time), or a
wall-clock time in a named zone (`LocalTime`). A wall-clock time the clocks
skip (spring forward) is shifted forward by the gap (02:30 on the night Berlin
jumps from 02:00 to 03:00 is 03:30), and one that occurs twice (fall back) is
the earlier instant: Python's `fold=0`, JavaScript Temporal's "compatible".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from sluice.runtime.errors import InvalidSchedule

# The furthest ahead a job may be due. Beyond it a time is a mistake (a year
# 9999, seconds given as ms), and past 1e14 ms the scripts would write the due
# time in a float's exponent form; 10 years keeps every due time a plain integer.
HORIZON = timedelta(days=3653)
HORIZON_MS = int(HORIZON.total_seconds() * 1000)


class Zoned(Protocol):
    """A wall-clock time in a named zone: `LocalTime`, or the HTTP API's body of it."""

    @property
    def local(self) -> str: ...
    @property
    def zone(self) -> str: ...


class LocalTime(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A wall-clock time in an IANA zone: `LocalTime("2026-12-24T09:00", "Europe/Berlin")`."""

    # ISO 8601 date and time without an offset.
    local: str
    zone: str


# What `run_at` and `expires_at` take.
When = datetime | str | Zoned

# RFC 9557: a date-time, then a time zone in brackets ("!" marks it critical,
# which changes nothing here: a zone that disagrees is always an error).
_SUFFIXED = re.compile(r"(?P<at>[^\[\]]+)\[!?(?P<zone>[^\[\]=]+)\]")


def due(delay_ms: int | None, run_at: When | None, what: str) -> tuple[int, int]:
    """(due epoch ms, delay ms) as the scripts take them; (0, 0) means now.

    A delay counts on Redis's clock, from the write; `run_at` is an absolute time
    (the module's docstring says which forms). Neither may be more than `HORIZON`
    ahead. `what` names the job in errors ("event 3").
    """
    if delay_ms is not None and run_at is not None:
        raise InvalidSchedule(f"{what}: give delay_ms or run_at, not both", "delay_ms")
    if delay_ms is not None:
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int):
            raise InvalidSchedule(
                f"{what}: delay_ms must be an integer of milliseconds", "delay_ms"
            )
        if delay_ms < 0:
            raise InvalidSchedule(f"{what}: delay_ms must not be negative", "delay_ms")
        if delay_ms > HORIZON_MS:
            raise InvalidSchedule(f"{what}: delay_ms {delay_ms} is {_beyond}", "delay_ms")
        return 0, delay_ms
    if run_at is None:
        return 0, 0
    at_ms = epoch_ms(run_at, what, "run_at")
    # The host's clock, not Redis's: a horizon of years does not need better.
    if at_ms > datetime.now(UTC).timestamp() * 1000 + HORIZON_MS:
        raise InvalidSchedule(f"{what}: run_at {run_at!s} is {_beyond}", "run_at")
    return at_ms, 0


_beyond = f"more than {HORIZON.days} days (10 years) ahead, the furthest a job may be due"


def epoch_ms(value: When, what: str, field: str) -> int:
    """An absolute time (see the module's docstring) as epoch ms (1 at the least: 0
    means none). `what` names the job and `field` the value in errors."""
    at = instant(value, what, field)
    try:
        return max(1, round(at.timestamp() * 1000))
    except (OverflowError, ValueError):  # year 1 at +09:00 lies before year 1 in UTC
        raise InvalidSchedule(f"{what}: {field} {value!r} is out of range", field) from None


def instant(value: When, what: str, field: str) -> datetime:
    """The instant an absolute time names, as an aware datetime."""
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str):
        suffixed = _SUFFIXED.fullmatch(value)
        if suffixed is None:
            at = _parse(value, value, what, field)
        else:
            zone = _zone(suffixed["zone"], what, field)
            at = _parse(suffixed["at"], value, what, field)
            if at.tzinfo is None:
                at = at.replace(tzinfo=zone)
            elif not suffixed["at"].upper().endswith("Z") and at.astimezone(zone).utcoffset() != (
                at.utcoffset()
            ):
                # "Z" gives the instant and leaves the local offset open (RFC 9557 §4.2).
                raise InvalidSchedule(
                    f"{what}: {field} {value!r}: the offset is not {zone.key}'s at that time "
                    f"({_offset(at.astimezone(zone))})",
                    field,
                )
    elif isinstance(getattr(value, "local", None), str) and isinstance(
        getattr(value, "zone", None), str
    ):
        zone = _zone(value.zone, what, f"{field}.zone")
        at = _parse(value.local, value.local, what, f"{field}.local")
        if at.tzinfo is not None:
            raise InvalidSchedule(
                f"{what}: {field}.local {value.local!r} has an offset; a local time has none",
                f"{field}.local",
            )
        at = at.replace(tzinfo=zone)
    else:
        raise InvalidSchedule(
            f"{what}: {field} must be a date-time or a local time and zone, not {value!r}", field
        )
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidSchedule(
            f"{what}: {field} {value!r} has no time zone; give an offset such as +00:00 or Z, "
            "or a zone such as [Europe/Berlin]",
            field,
        )
    return at


def _parse(text: str, value: str, what: str, field: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSchedule(
            f"{what}: {field} {value!r} is not an RFC 3339 date-time", field
        ) from None


def _zone(name: str, what: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"{what}: {field}: unknown time zone {name!r}", field) from None


def _offset(at: datetime) -> str:
    """`at`'s UTC offset as +hh:mm."""
    minutes = round((at.utcoffset() or timedelta()).total_seconds() / 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
