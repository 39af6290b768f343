"""Request and response bodies of the HTTP API, as msgspec Structs.

The OpenAPI document is generated from these types (runtime.ingress.openapi), so
what is validated and what is documented cannot drift apart. They are the API's
own: what they show of stored things is a view (runtime.ingress.views), never a
type of the client API or the data layer, which may change with the storage.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from sluice.runtime.ingress.views import (
    BullMQChannel,
    BullMQRateLimit,
    BullMQRateSummary,
    Counts,
    Deferral,
    JobRecord,
    MinuteCount,
    Schedule,
    Snapshot,
    WebhookEndpoint,
    Worker,
)
from sluice.streams.ratelimit import MAX_RATE_PER_S, MIN_RATE_PER_S

T = TypeVar("T")

Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]
Priority = Literal["high", "normal", "low"]


class LocalTime(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A wall-clock time in an IANA time zone. A time the clocks skip (spring
    forward) is moved forward by the gap; one that occurs twice (fall back) is the
    earlier instant."""

    # ISO 8601 date and time without an offset: "2026-12-24T09:00".
    local: str
    # An IANA zone: "Europe/Berlin".
    zone: str


When = Annotated[
    str | LocalTime,
    msgspec.Meta(
        description=(
            "RFC 3339 (`2026-12-24T09:00:00+01:00`), RFC 9557 with a time zone suffix "
            "(`2026-12-24T09:00:00[Europe/Berlin]`; with an offset too, the offset must be "
            "the zone's at that time), or a local time and zone "
            '(`{"local": "2026-12-24T09:00", "zone": "Europe/Berlin"}`)'
        )
    ),
]


class EventBody(msgspec.Struct, Generic[T], kw_only=True, forbid_unknown_fields=True):
    """One event: `data` is the input of the functions its topic routes to."""

    workspace: Token
    data: T
    # Makes the publish idempotent: the same id is never a second job of the
    # workspace (each workspace has ids of its own).
    id: Token | None = None
    # Run later: `delay_ms` from now, or at `run_at`; not both.
    delay_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    run_at: When | None = None
    # Not to start after this time: a late job is expired, not run.
    expires_at: When | None = None
    # One live job per business key; publishing it again replaces one not started.
    key: Token | None = None
    tags: list[Token] = []
    priority: Priority = "normal"


def events_of(input_type: type) -> tuple[Any, Any]:
    """The body types of a topic whose functions take `input_type`: one event, and
    one event or an array of them."""
    one: Any = EventBody[input_type]  # type: ignore[valid-type]
    return one, one | list[one]


class Published(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    # True when the job existed already (same id): nothing was written.
    duplicate: bool
    # With `run_at`: the instant it named, in UTC (RFC 3339), as resolved from its zone.
    due: str | None = None


class PublishedMany(msgspec.Struct, frozen=True):
    jobs: list[Published]


class JobsPage(msgspec.Struct, frozen=True):
    jobs: list[JobRecord]
    # Pass back as `cursor` for the next page; empty when there is none.
    cursor: str


class Reschedule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Neither given: due now."""

    delay_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    run_at: When | None = None


class ScheduleBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A repeatable job: `cron` (in `zone`) or `every_ms`, one of them; optional bounds."""

    # The function's input, given to every run.
    data: Any
    # Default: the key's only workspace.
    workspace: Token | None = None
    # Five fields, minute hour day-of-month month day-of-week, as wall-clock times in `zone`.
    cron: str | None = None
    zone: str = "UTC"
    every_ms: int | None = None
    # No run before `start` (an interval's runs fall on start + k * every_ms) or
    # after `end`; at most `limit` runs.
    start: When | None = None
    end: When | None = None
    limit: int | None = None


class Schedules(msgspec.Struct, frozen=True):
    schedules: list[Schedule]


class Queue(msgspec.Struct, frozen=True):
    function: str
    topics: list[str]
    counts: Counts
    # Paused: its workers start nothing until resumed.
    paused: bool


class Queues(msgspec.Struct, frozen=True):
    queues: list[Queue]


class DeadLetterView(msgspec.Struct, frozen=True):
    entry_id: str
    id: str
    workspace: str
    reason: str
    # Every failed attempt's error, oldest first.
    errors: list[str]
    attempt: int
    created_ms: int
    # Beside `errors` (the same index): where each was raised, its innermost 20
    # frames within 8 KiB ("" when none was kept: a timeout, an older attempt).
    tracebacks: list[str] = []


class DeadLetterList(msgspec.Struct, frozen=True):
    letters: list[DeadLetterView]


class Replay(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which letters: these job ids (as given: ids are per workspace), or all (of
    `workspace`, if given)."""

    ids: list[Token] | None = None
    workspace: Token | None = None


class Replayed(msgspec.Struct, frozen=True):
    replayed: int


class Purge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which letters to delete for good: these job ids, or all (of `workspace`, if given)."""

    ids: list[Token] | None = None
    workspace: Token | None = None


class Purged(msgspec.Struct, frozen=True):
    purged: int


class WorkerList(msgspec.Struct, frozen=True):
    """Per function, its workers, most recently seen first."""

    functions: dict[str, list[Worker]]


class MetricsHistory(msgspec.Struct, frozen=True):
    """Per function, its jobs per minute over the last hour, oldest first; the last
    minute is the current one, still counting."""

    functions: dict[str, list[MinuteCount]]


class FunctionMetrics(msgspec.Struct, frozen=True):
    functions: dict[str, Snapshot]


class MetricsReset(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which metrics to clear: a function's (all of it) or one workspace's, of one
    function or of every function."""

    function: str | None = None
    workspace: Token | None = None


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Jobs started per second; null goes back to the declared rate."""

    rate_per_s: Annotated[float, msgspec.Meta(ge=MIN_RATE_PER_S, le=MAX_RATE_PER_S)] | None


class LimitsView(msgspec.Struct, frozen=True):
    function: str
    rate_per_s: float
    workspace_rate_per_s: float
    deferrals: dict[str, Deferral]


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok", "unavailable"]
    detail: str = ""


class BullMQEmail(msgspec.Struct, frozen=True, kw_only=True):
    """POST /api/schedule-email (and /api/jobs), as the BullMQ service took it."""

    to: str
    subject: str
    html: str
    # The key's workspace when absent; given, one the key may act for.
    workspaceId: Token | None = None
    contactId: str = ""
    # Milliseconds from now.
    delay: Annotated[int, msgspec.Meta(ge=0)] = 0


class BullMQSms(msgspec.Struct, frozen=True, kw_only=True):
    """POST /api/schedule-sms, as the BullMQ service took it."""

    phoneNumber: str
    message: str
    # The key's workspace when absent; given, one the key may act for.
    workspaceId: Token | None = None
    # RFC 3339, or RFC 9557 with a zone as `run_at`; absent: now.
    scheduledFor: str | None = None
    metadata: dict[str, Any] = {}


class BullMQReply(msgspec.Struct, frozen=True):
    success: bool
    jobId: str


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A webhook endpoint to create: `webhook.deliver` POSTs the workspace's events to it."""

    url: Annotated[
        str,
        msgspec.Meta(
            max_length=2048,
            pattern=r"^https?://",
            description="Where events are POSTed; private and loopback addresses are "
            "refused at delivery unless the deployment allows them (SLUICE_WEBHOOK_ALLOW)",
        ),
    ]
    description: Annotated[str, msgspec.Meta(max_length=256)] = ""


class WebhookEndpoints(msgspec.Struct, frozen=True):
    endpoints: list[WebhookEndpoint]


class BullMQChannelRates(msgspec.Struct, frozen=True):
    sms: BullMQRateSummary
    email: BullMQRateSummary


class BullMQMetrics(msgspec.Struct, frozen=True):
    """GET /api/metrics: the deployment's (admin key) or the key's workspace's."""

    sms: BullMQChannel
    email: BullMQChannel
    # Workspaces the rate limits held back, by id.
    workspaceRateLimits: dict[str, BullMQChannelRates]
    timestamp: str


class BullMQWorkspaceMetrics(msgspec.Struct, frozen=True):
    workspaceId: str
    sms: BullMQRateLimit
    email: BullMQRateLimit
    timestamp: str


class BullMQMetricsReset(msgspec.Struct, frozen=True, kw_only=True):
    """Which metrics to clear, with the rate-limit records: one channel's (or both)."""

    type: Literal["sms", "email"] | None = None
    # The key's workspace when absent (an admin key: every workspace).
    workspaceId: Token | None = None


class BullMQResetDone(msgspec.Struct, frozen=True):
    success: bool
    message: str


class BullMQQueueCounts(msgspec.Struct, frozen=True):
    waiting: int
    active: int
    delayed: int
    # Jobs that failed for good: dead letters not replayed or purged.
    failed: int


class BullMQRedis(msgspec.Struct, frozen=True):
    reachable: bool
    # How long a PING took (ms); 0 when it did not answer.
    latencyMs: float


class BullMQHealth(msgspec.Struct, frozen=True):
    """GET /api/v1/queue/health: 503 when Redis does not answer within a second."""

    status: Literal["ok", "unavailable"]
    redis: BullMQRedis
    # Per function: its jobs now, over every workspace; shown to admin keys only.
    queues: dict[str, BullMQQueueCounts]
    timestamp: str
