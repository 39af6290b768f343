"""When a job is due: a delay from now or an absolute time, checked before anything is written."""

from __future__ import annotations

from datetime import datetime

from runtime.errors import InvalidSchedule


def due(delay_ms: int | None, run_at: datetime | str | None, what: str) -> tuple[int, int]:
    """(due epoch ms, delay ms) as the scripts take them; (0, 0) means now.

    A delay counts on Redis's clock, from the write; `run_at` is an aware datetime
    or RFC 3339 text. `what` names the job in errors ("event 3").
    """
    if delay_ms is not None and run_at is not None:
        raise InvalidSchedule(f"{what}: give delay_ms or run_at, not both")
    if delay_ms is not None:
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int):
            raise InvalidSchedule(f"{what}: delay_ms must be an integer of milliseconds")
        if delay_ms < 0:
            raise InvalidSchedule(f"{what}: delay_ms must not be negative")
        return 0, delay_ms
    if run_at is None:
        return 0, 0
    return epoch_ms(run_at, f"{what}: run_at"), 0


def epoch_ms(value: datetime | str, what: str) -> int:
    """An aware datetime or RFC 3339 text as epoch ms (1 at the least: 0 means none)."""
    at = value
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            raise InvalidSchedule(f"{what} {value!r} is not an RFC 3339 date-time") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidSchedule(
            f"{what} {value!r} has no time zone; give an offset such as +00:00 or Z"
        )
    return max(1, round(at.timestamp() * 1000))
