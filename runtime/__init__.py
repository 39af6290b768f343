"""The public API of the runtime: the only names `functions/` imports."""

from runtime.client import Client, Event, Receipt
from runtime.deadletters import DeadLetters
from runtime.declare import Batch, Function, Job, Options, batch_function, function
from runtime.errors import (
    ConfigurationError,
    InvalidName,
    InvalidPayload,
    InvalidSchedule,
    PayloadTooLarge,
    RedisUnavailable,
    Reject,
    Retry,
    SluiceError,
    UnknownFunction,
)

__all__ = [
    "Batch",
    "Client",
    "ConfigurationError",
    "DeadLetters",
    "Event",
    "Function",
    "InvalidName",
    "InvalidPayload",
    "InvalidSchedule",
    "Job",
    "Options",
    "PayloadTooLarge",
    "Receipt",
    "RedisUnavailable",
    "Reject",
    "Retry",
    "SluiceError",
    "UnknownFunction",
    "batch_function",
    "function",
]
