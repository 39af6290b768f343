"""The public API of the runtime: the only names `functions/` imports."""

from sluice.runtime.client.current import current_client
from sluice.runtime.client.deadletters import DeadLetters
from sluice.runtime.client.housekeeping import Housekeeping
from sluice.runtime.client.jobs import Cancelled, Jobs
from sluice.runtime.client.limits import Limits
from sluice.runtime.client.metrics import Metrics
from sluice.runtime.client.publish import Client, Event, Receipt
from sluice.runtime.client.repeats import Repeats
from sluice.runtime.client.reports import Line as ReportLine
from sluice.runtime.client.reports import Reports, Usage, period
from sluice.runtime.client.timing import LocalTime, instant
from sluice.runtime.client.webhooks import Endpoint as WebhookEndpoint
from sluice.runtime.client.webhooks import Webhooks
from sluice.runtime.declare import Batch, Function, Job, Options, batch_function, function
from sluice.runtime.errors import (
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
from sluice.runtime.phones import e164
from sluice.runtime.settings import (
    EmailSettings,
    Settings,
    SmsSettings,
    WebhookSettings,
    WhatsAppSettings,
    current_settings,
)
from sluice.streams.sweep import Swept
from sluice.streams.tagged import TagCounts

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
