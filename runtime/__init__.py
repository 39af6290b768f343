"""The public API of the runtime: the only names `functions/` imports."""

from runtime.client import Client, Event, Receipt
from runtime.deadletters import DeadLetters
from runtime.declare import Batch, Function, Job, Options, batch_function, function
from runtime.errors import (
    ConfigurationError,
    InvalidCursor,
    InvalidName,
    InvalidPayload,
    InvalidSchedule,
    JobNotFound,
    PayloadTooLarge,
    RedisFull,
    RedisUnavailable,
    Reject,
    Retry,
    SluiceError,
    UnknownFunction,
    WrongJobState,
)
from runtime.jobs import Cancelled, Jobs
from runtime.limits import Limits
from runtime.metrics import Metrics

__all__ = [
    "Batch",
    "Cancelled",
    "Client",
    "ConfigurationError",
    "DeadLetters",
    "Event",
    "Function",
    "InvalidCursor",
    "InvalidName",
    "InvalidPayload",
    "InvalidSchedule",
    "Job",
    "JobNotFound",
    "Jobs",
    "Limits",
    "Metrics",
    "Options",
    "PayloadTooLarge",
    "Receipt",
    "RedisFull",
    "RedisUnavailable",
    "Reject",
    "Retry",
    "SluiceError",
    "UnknownFunction",
    "WrongJobState",
    "batch_function",
    "function",
]
