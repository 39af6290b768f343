"""Errors raised by the runtime; all derive from `SluiceError` (re-exported here)."""

from __future__ import annotations

from streams.errors import ConfigurationError, InvalidName, RedisUnavailable, SluiceError

__all__ = [
    "ConfigurationError",
    "InvalidName",
    "InvalidPayload",
    "PayloadTooLarge",
    "RedisUnavailable",
    "SluiceError",
    "UnknownFunction",
]


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


class PayloadTooLarge(SluiceError, ValueError):
    """Raised when an encoded payload exceeds the function's `max_payload_bytes`."""
