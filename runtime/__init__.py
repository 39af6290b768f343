"""The public API of the runtime: the only names `functions/` imports."""

from runtime.client.current import current_client
from runtime.client.deadletters import DeadLetters
from runtime.client.housekeeping import Housekeeping
from runtime.client.jobs import Cancelled, Jobs
from runtime.client.limits import Limits
from runtime.client.metrics import Metrics
from runtime.client.publish import Client, Event, Receipt
from runtime.client.repeats import Repeats
from runtime.client.reports import Line as ReportLine
from runtime.client.reports import Reports, Usage, period
from runtime.client.timing import LocalTime, instant
from runtime.client.webhooks import Endpoint as WebhookEndpoint
from runtime.client.webhooks import Webhooks
from runtime.declare import Batch, Function, Job, Options, batch_function, function
from runtime.errors import (
    ConfigurationError,
    InvalidCursor,
    InvalidName,
    InvalidPayload,
    InvalidSchedule,
    JobNotFound,
    NotInWorker,
    PayloadTooLarge,
    RedisFull,
    RedisUnavailable,
    Reject,
    Retry,
    SluiceError,
    UnknownFunction,
    WrongJobState,
)
from runtime.phones import e164
from runtime.settings import (
    EmailSettings,
    Settings,
    SmsSettings,
    WebhookSettings,
    WhatsAppSettings,
    current_settings,
)
from streams.sweep import Swept
from streams.tagged import TagCounts

__all__ = [
    "Batch",
    "Cancelled",
    "Client",
    "ConfigurationError",
    "DeadLetters",
    "EmailSettings",
    "Event",
    "Function",
    "Housekeeping",
    "InvalidCursor",
    "InvalidName",
    "InvalidPayload",
    "InvalidSchedule",
    "Job",
    "JobNotFound",
    "Jobs",
    "Limits",
    "LocalTime",
    "Metrics",
    "NotInWorker",
    "Options",
    "PayloadTooLarge",
    "Receipt",
    "RedisFull",
    "RedisUnavailable",
    "Reject",
    "Repeats",
    "ReportLine",
    "Reports",
    "Retry",
    "Settings",
    "SluiceError",
    "SmsSettings",
    "Swept",
    "TagCounts",
    "UnknownFunction",
    "Usage",
    "WebhookEndpoint",
    "WebhookSettings",
    "Webhooks",
    "WhatsAppSettings",
    "WrongJobState",
    "batch_function",
    "current_client",
    "current_settings",
    "e164",
    "function",
    "instant",
    "period",
]
