"""Errors raised by the runtime; all derive from `SluiceError` (re-exported here)."""

from __future__ import annotations

from datetime import timedelta

from sluice.streams.errors import (
    ConfigurationError,
    InvalidCursor,
    InvalidName,
    RedisFull,
    RedisUnavailable,
    SluiceError,
)

__all__ = [
    "CannotListen",
    "ConfigurationError",
    "InvalidCursor",
    "InvalidEndpoint",
    "InvalidName",
    "InvalidPayload",
    "InvalidSchedule",
    "JobNotFound",
    "NotInWorker",
    "PayloadTooLarge",
    "RedisFull",
    "RedisUnavailable",
    "Reject",
    "Retry",
    "SluiceError",
    "TooManyEndpoints",
    "UnknownFunction",
    "WrongJobState",
]


class CannotListen(SluiceError):
    """The ingress's address cannot be bound (in use, not this host's, not permitted)."""


class NotInWorker(ConfigurationError):
    """`current_client()` or `current_settings()` called outside a handler a worker runs."""


class UnknownFunction(SluiceError, LookupError):
    """Raised when a publish names a function or topic no declared function handles."""


class InvalidPayload(SluiceError, ValueError):
    """Raised when published data does not match the function's input type.

    `path` is the JSON path of the offending field (`$.to`), `$` for the whole value.
    """

    def __init__(self, function: str, index: int, message: str) -> None:
        self.function = function
        self.index = index
        detail, sep, path = message.rpartition(" - at `")
        self.path = path.rstrip("`") if sep else "$"
        self.detail = detail if sep else message
        super().__init__(
            f"event {index} for function {function!r}: {self.detail} (at `{self.path}`)"
        )


class InvalidEndpoint(SluiceError, ValueError):
    """Raised when a webhook endpoint's URL is not an absolute http or https URL."""


class TooManyEndpoints(SluiceError):
    """Raised when a workspace adding a webhook endpoint has as many as it may."""


class InvalidPriority(SluiceError, ValueError):
    """A priority other than high, normal or low."""


class InvalidSchedule(SluiceError, ValueError):
    """Raised when a publish's delay or run-at time is malformed, ambiguous, or
    beyond the horizon (runtime.client.timing); `field` names it ("delay_ms") when one does."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class JobNotFound(SluiceError, LookupError):
    """Raised when no job has the given id (never published, or its record expired)."""


class WrongJobState(SluiceError):
    """Raised when a job is in a state that forbids the change asked for.

    A running job cannot be cancelled (its handler is under way), a finished one
    neither; only a delayed job can be rescheduled.
    """

    def __init__(self, job_id: str, state: str, action: str) -> None:
        self.job_id = job_id
        self.state = state
        why = {
            "active": "a worker is running it",
            "queued": "it is queued to run now",
        }.get(state, "it has finished")
        super().__init__(f"job {job_id!r} cannot be {action}: it is {state} ({why})")


class PayloadTooLarge(SluiceError, ValueError):
    """Raised when an encoded payload exceeds the function's `max_payload_bytes`."""


# Kept here, not imported from runtime.timing, which imports this module.
RETRY_HORIZON_S = 3653 * 86_400.0


class Retry(Exception):
    """Raised by a handler to retry its job `after` seconds (or a timedelta) from now.

    The attempt still counts: after the function's last attempt the job is dead.
    """

    def __init__(self, reason: str = "", *, after: float | timedelta) -> None:
        self.after_s = after.total_seconds() if isinstance(after, timedelta) else float(after)
        # As for a publish (runtime.timing.HORIZON): Redis keeps due times in ms.
        if not 0 <= self.after_s <= RETRY_HORIZON_S:
            raise ValueError(
                f"Retry(after=...) must be 0 to {RETRY_HORIZON_S:g} s (ten years), "
                f"got {self.after_s:g} s"
            )
        super().__init__(reason or f"retry requested after {self.after_s:g} s")


class Reject(Exception):
    """Raised by a handler for a job that can never succeed: dead-lettered at once."""
