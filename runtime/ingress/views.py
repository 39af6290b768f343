"""What the HTTP API shows of stored things: its own Structs, converted at the edge
from the types the client API and the data layer return.

The API's shapes are a promise to its clients; the data layer's are free to
change with the record format. Each view is converted field by field, so a field
renamed or dropped below is a mypy error here, and one added below is not shown
until a view shows it (`tests/ingress/test_views.py` holds each view's JSON).
The class names are the OpenAPI document's schema names, which clients know.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from sluice.runtime.client import metrics
from sluice.streams import consumers, jobs, ratelimit, repeats, tagged, webhooks

JobState = Literal["delayed", "queued", "active", "completed", "dead", "cancelled", "expired"]
# The states GET /v1/jobs lists; "retrying": delayed with failed attempts.
ListedState = Literal[
    "delayed", "retrying", "waiting", "active", "completed", "cancelled", "expired", "dead"
]


class FailedAttempt(msgspec.Struct, frozen=True):
    """One failed attempt: its error, and the traceback of where it was raised
    (its innermost 20 frames within 8 KiB; "" when none was kept)."""

    error: str
    traceback: str


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    function: str
    workspace: str
    state: JobState
    # Redis time (ms) the job entered the stream (0 while delayed), and settled
    # (0 while unsettled).
    queued_ms: int = 0
    finished_ms: int = 0
    # A completed or dead job that ran: when its last attempt started (Redis time,
    # ms) and how long it ran; an active job: when its handler started, once it
    # ran past its worker's next metrics flush (about a second); 0 otherwise.
    started_ms: int = 0
    ran_ms: int = 0
    # While delayed: when it falls due (Redis time, ms).
    due_ms: int = 0
    # Attempts that have ended; the running or next one is attempts + 1.
    attempts: int = 0
    # The last attempt's error, if it failed.
    error: str = ""
    key: str = ""
    tags: tuple[str, ...] = ()
    # What the handler returned, for a completed job.
    result: Any = None
    # While active: the consumer holding it and how often it has been delivered.
    consumer: str = ""
    deliveries: int = 0
    # Known while it waits or runs: "high", "normal" or "low".
    priority: str = "normal"
    # The job's input as published, while Sluice keeps it: delayed, waiting,
    # active, or dead (until its letter is replayed or purged); null once it
    # completed, was cancelled or expired. Shown only to keys of its workspace
    # (and admin keys), as the job itself is.
    data: Any = None
    # Every failed attempt, oldest first, while its input is kept (as `data`).
    failures: list[FailedAttempt] = []
    # The trace it was published in (W3C, 32 hex digits), while its input is kept
    # and if its publisher traced it.
    trace_id: str = ""


def job_view(record: jobs.JobRecord) -> JobRecord:
    return JobRecord(
        id=record.id,
        function=record.function,
        workspace=record.workspace,
        state=record.state,
        queued_ms=record.queued_ms,
        finished_ms=record.finished_ms,
        started_ms=record.started_ms,
        ran_ms=record.ran_ms,
        due_ms=record.due_ms,
        attempts=record.attempts,
        error=record.error,
        key=record.key,
        tags=record.tags,
        result=record.result,
        consumer=record.consumer,
        deliveries=record.deliveries,
        priority=record.priority,
        data=record.data,
        failures=[FailedAttempt(f.error, f.traceback) for f in record.failures],
        trace_id=record.trace_id,
    )


# The docstring is the schema's description in the OpenAPI document.
class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """A function's jobs by state, over all its partitions.

    waiting, active, delayed and dead are the jobs there now; the others are
    totals since the function's first job.
    """

    waiting: int
    active: int
    delayed: int
    completed: int
    # Attempts that ended in an error: retried, or dead after the last one.
    failed: int
    # Letters in the dead-letter stream, waiting to be replayed or purged.
    dead: int
    cancelled: int
    # Queued past their workspace's share of the stream: waited in its backlog.
    backlogged: int
    # Picked up after their expiry time: never run.
    expired: int
    published: int
    # Moved from the delayed set to the stream when due.
    promoted: int
    # Settlements refused because another consumer had reclaimed the entry.
    fenced: int
    # Pending entries found deleted from the stream.
    lost: int
    # Dead letters queued again, and deleted for good (purged, or past their retention).
    replayed: int
    purged: int


def counts_view(counts: jobs.Counts) -> Counts:
    return Counts(
        waiting=counts.waiting,
        active=counts.active,
        delayed=counts.delayed,
        completed=counts.completed,
        failed=counts.failed,
        dead=counts.dead,
        cancelled=counts.cancelled,
        backlogged=counts.backlogged,
        expired=counts.expired,
        published=counts.published,
        promoted=counts.promoted,
        fenced=counts.fenced,
        lost=counts.lost,
        replayed=counts.replayed,
        purged=counts.purged,
    )


class TagCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A tag's live jobs by state: delayed, waiting (in the stream or a workspace's
    backlog, not yet read), active (read by a worker: running, or held until its
    rate-limit slot). A job leaves its tags when it finishes."""

    delayed: int
    waiting: int
    active: int


class TagProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A tag's live jobs in one workspace, by function (those with none left out)
    and in all: a campaign's progress is what it published less these."""

    tag: str
    workspace: str
    functions: dict[str, TagCounts]
    total: TagCounts


def _tag_counts_view(counts: tagged.TagCounts) -> TagCounts:
    return TagCounts(delayed=counts.delayed, waiting=counts.waiting, active=counts.active)


def tag_progress_view(tag: str, workspace: str, found: dict[str, tagged.TagCounts]) -> TagProgress:
    return TagProgress(
        tag=tag,
        workspace=workspace,
        functions={name: _tag_counts_view(counts) for name, counts in found.items()},
        total=_tag_counts_view(sum(found.values(), tagged.TagCounts())),
    )


class Deferral(msgspec.Struct, frozen=True):
    """A workspace's record of jobs deferred for the rate limits."""

    count: int
    last_ms: int
    # Jobs the workspace asked for in the call that last deferred some.
    asked: int
    # Which limit it hit: "global" or "workspace".
    limit: str


def deferral_view(deferral: ratelimit.Deferral) -> Deferral:
    return Deferral(deferral.count, deferral.last_ms, deferral.asked, deferral.limit)


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    processed: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    rate_limited: int
    expired: int
    batches: int
    avg_ms: float
    # Upper bound of the histogram bucket holding the 95th percentile call.
    p95_ms: float
    last_minute: int
    # Epoch ms of the last job processed (0: none yet).
    last_ms: int


def snapshot_view(snapshot: metrics.Snapshot) -> Snapshot:
    return Snapshot(
        processed=snapshot.processed,
        succeeded=snapshot.succeeded,
        failed=snapshot.failed,
        retried=snapshot.retried,
        dead=snapshot.dead,
        rate_limited=snapshot.rate_limited,
        expired=snapshot.expired,
        batches=snapshot.batches,
        avg_ms=snapshot.avg_ms,
        p95_ms=snapshot.p95_ms,
        last_minute=snapshot.last_minute,
        last_ms=snapshot.last_ms,
    )


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A workspace's webhook endpoint, without its secret (shown once, at creation)."""

    id: str
    url: str
    description: str
    created_ms: int
    # Why deliveries to it stopped ("": they have not; a 410 Gone stops them) and when.
    disabled: str
    disabled_ms: int


class WebhookEndpointCreated(WebhookEndpoint, frozen=True, kw_only=True):
    """A new endpoint with its signing secret (`whsec_` + base64): keep it, no
    answer shows it again."""

    secret: str


def endpoint_view(endpoint: webhooks.Endpoint) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        created_ms=endpoint.created_ms,
        disabled=endpoint.disabled,
        disabled_ms=endpoint.disabled_ms,
    )


def created_view(endpoint: webhooks.Endpoint) -> WebhookEndpointCreated:
    shown = endpoint_view(endpoint)
    return WebhookEndpointCreated(**msgspec.structs.asdict(shown), secret=endpoint.secret)


class NextRun(msgspec.Struct, frozen=True):
    at_ms: int
    # The same instant in the schedule's zone, RFC 3339 with its offset.
    at: str


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A repeatable job: a cron expression in a zone, or an interval, with its bounds."""

    function: str
    name: str
    workspace: str
    # What each run is given: the function's input.
    data: Any
    # One of cron (in `zone`) and every_ms is set; the other is "" or 0.
    cron: str
    zone: str
    every_ms: int
    # Bounds, 0 for none: no run before start_ms or after end_ms, at most `limit`
    # runs (the first `limit` due times; last_ms is the limit's last).
    start_ms: int
    end_ms: int
    limit: int
    last_ms: int
    paused: bool
    # When it was added or last replaced.
    created_ms: int
    # Its next due times (paused: those it would have), fewer near its end.
    next_runs: list[NextRun]


def schedule_view(function: str, schedule: repeats.Schedule, runs: list[int]) -> Schedule:
    try:
        zone = ZoneInfo(schedule.zone)
    except (ZoneInfoNotFoundError, ValueError):
        # An interval schedule stored before zones were checked: shown in UTC.
        zone = ZoneInfo("UTC")
    return Schedule(
        function=function,
        name=schedule.name,
        workspace=schedule.workspace,
        data=msgspec.msgpack.decode(schedule.payload),
        cron=schedule.cron,
        zone=schedule.zone,
        every_ms=schedule.every_ms,
        start_ms=schedule.start_ms,
        end_ms=schedule.end_ms,
        limit=schedule.limit,
        last_ms=schedule.last_ms,
        paused=schedule.paused,
        created_ms=schedule.anchor_ms,
        next_runs=[
            NextRun(at, datetime.fromtimestamp(at / 1000, zone).isoformat(timespec="seconds"))
            for at in runs
        ],
    )


class Worker(msgspec.Struct, frozen=True, kw_only=True):
    """A worker process reading a function (a consumer of its group)."""

    # Its consumer name: host, pid and a random suffix, or SLUICE_CONSUMER.
    name: str
    # Jobs delivered to it and not settled: running, or left behind if it died.
    pending: int
    # Milliseconds since it last read or claimed jobs; a live worker reads at
    # least once per SLUICE_BLOCK_MS.
    idle_ms: int


def worker_view(consumer: consumers.Consumer) -> Worker:
    return Worker(name=consumer.name, pending=consumer.pending, idle_ms=consumer.idle_ms)


class MinuteCount(msgspec.Struct, frozen=True, kw_only=True):
    """A function's jobs in one minute."""

    # The minute's start (epoch ms).
    at_ms: int
    processed: int
    # Attempts that ended in an error (retried, or dead after the last one).
    failed: int


def minute_view(minute: metrics.Minute) -> MinuteCount:
    return MinuteCount(at_ms=minute.at_ms, processed=minute.processed, failed=minute.failed)


# The BullMQ service's shapes (the /api routes teams move over from): its field
# names, camelCase, and its times as ISO 8601 UTC with milliseconds.


def iso_ms(epoch_ms: int) -> str:
    """`2025-03-22T10:15:30.123Z`, as JavaScript's Date.toISOString writes it."""
    shown = datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return shown.replace("+00:00", "Z")


class BullMQChannel(msgspec.Struct, frozen=True, kw_only=True):
    """A channel's (sms.send's, email.send's) metrics as the BullMQ service showed them."""

    totalProcessed: int
    # Handler calls: one per batch of a workspace's jobs.
    batchesProcessed: int
    # Percent of processed jobs that succeeded, one decimal (0 before any).
    successRate: float
    # Milliseconds a handler call took, on average.
    avgProcessingTime: float
    # Jobs processed a second, over the last minute.
    throughput: float
    # Jobs the rate limits held back.
    rateExceededCount: int
    lastProcessedTime: str | None


def channel_view(snapshot: metrics.Snapshot) -> BullMQChannel:
    processed = snapshot.processed
    return BullMQChannel(
        totalProcessed=processed,
        batchesProcessed=snapshot.batches,
        successRate=round(100 * snapshot.succeeded / processed, 1) if processed else 0.0,
        avgProcessingTime=round(snapshot.avg_ms, 1),
        throughput=round(snapshot.last_minute / 60, 2),
        rateExceededCount=snapshot.rate_limited,
        lastProcessedTime=iso_ms(snapshot.last_ms) if snapshot.last_ms else None,
    )


class BullMQRateSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A workspace's rate-limit record on one channel."""

    # Jobs the limits held back (0 once reset).
    count: int
    lastExceeded: str | None


class BullMQRateDetail(msgspec.Struct, frozen=True, kw_only=True):
    """One second in which the limits held back some of the workspace's jobs."""

    timestamp: str
    # Jobs its workers' reads asked for in that second.
    batchSize: int
    errorMessage: str


class BullMQRateLimit(BullMQRateSummary, frozen=True, kw_only=True):
    """... with its last seconds of deferrals, newest first (at most 20)."""

    details: list[BullMQRateDetail]


def rate_summary_view(deferral: ratelimit.Deferral | None) -> BullMQRateSummary:
    if deferral is None:
        return BullMQRateSummary(count=0, lastExceeded=None)
    return BullMQRateSummary(count=deferral.count, lastExceeded=iso_ms(deferral.last_ms))


def rate_limit_view(
    deferral: ratelimit.Deferral | None, history: list[ratelimit.DeferralEvent]
) -> BullMQRateLimit:
    summary = rate_summary_view(deferral)
    return BullMQRateLimit(
        count=summary.count,
        lastExceeded=summary.lastExceeded,
        details=[
            BullMQRateDetail(
                timestamp=iso_ms(event.at_ms),
                batchSize=event.asked,
                errorMessage=f"{'Workspace rate' if event.limit == 'workspace' else 'Rate'}"
                f" limit exceeded: {event.rate_per_s:g} per second",
            )
            for event in history
        ],
    )
