"""The public API of the runtime: the only names `functions/` imports."""

from runtime.client import Client, Event, Receipt
from runtime.declare import Batch, Function, Job, Options, batch_function, function
from runtime.errors import (
    ConfigurationError,
    InvalidName,
    InvalidPayload,
    PayloadTooLarge,
    RedisUnavailable,
    SluiceError,
    UnknownFunction,
)

__all__ = [
    "Batch",
    "Client",
    "ConfigurationError",
    "Event",
    "Function",
    "InvalidName",
    "InvalidPayload",
    "Job",
    "Options",
    "PayloadTooLarge",
    "Receipt",
    "RedisUnavailable",
    "SluiceError",
    "UnknownFunction",
    "batch_function",
    "function",
]
