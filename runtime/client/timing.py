"""When a job is due: a delay from now or an absolute time, checked before anything is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runtime.errors import InvalidSchedule

# The furthest ahead a job may be due. Beyond it a time is a mistake (a year
# 9999, seconds given as ms), and past 1e14 ms the scripts would write the due
# time in a float's exponent form; 10 years keeps every due time a plain integer.
HORIZON = timedelta(days=3653)
HORIZON_MS = int(HORIZON.total_seconds() * 1000)


def due(delay_ms: int | None, run_at: datetime | str | None, what: str) -> tuple[int, int]:
    """(due epoch ms, delay ms) as the scripts take them; (0, 0) means now.

    A delay counts on Redis's clock, from the write; `run_at` is an aware datetime
    or RFC 3339 text. Neither may be more than `HORIZON` ahead. `what` names the
    job in errors ("event 3").
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


def epoch_ms(value: datetime | str, what: str, field: str) -> int:
    """An aware datetime or RFC 3339 text as epoch ms (1 at the least: 0 means none).
    `what` names the job and `field` the value in errors."""
    at = value
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            raise InvalidSchedule(
                f"{what}: {field} {value!r} is not an RFC 3339 date-time", field
            ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidSchedule(
            f"{what}: {field} {value!r} has no time zone; give an offset such as +00:00 or Z",
            field,
        )
    return max(1, round(at.timestamp() * 1000))
