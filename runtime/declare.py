"""Declaring handler functions: `@function` for one job, `@batch_function` for batches.

Each decorator builds a typed `Function` value; nothing is registered as a side
effect of importing a module. A deployment lists its functions explicitly (see
`functions/__init__.py`), and the worker loads that list by a `module:attr` name.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypedDict, TypeVar, Unpack

import msgspec

from sluice.runtime.errors import Reject, Retry
from sluice.streams.errors import ConfigurationError
from sluice.streams.keys import check_function_name
from sluice.streams.ratelimit import MAX_RATE_PER_S, MIN_RATE_PER_S

T = TypeVar("T", bound=msgspec.Struct)

log = logging.getLogger(__name__)


class Job(msgspec.Struct, Generic[T], frozen=True):
    """One delivery of one event to one function, as a handler sees it."""

    # Unique across workspaces: an id its publisher gave reads "<workspace>~<id>"
    # (streams.keys.given_id), so a handler's own records of done jobs never take
    # one tenant's job for another's of the same id.
    id: str
    workspace: str
    data: T
    # 1 on the first attempt; handlers use id and attempt to stay idempotent.
    attempt: int
    # How often the group handed out this entry; above 1 after a worker was lost.
    deliveries: int
    created_ms: int


class Batch(Generic[T]):
    """Jobs of one workspace handed to a batch handler in one call.

    Returning normally completes every job not passed to `fail`; raising fails all.
    """

    __slots__ = ("failures", "jobs", "results", "workspace")

    def __init__(self, workspace: str, jobs: list[Job[T]]) -> None:
        self.workspace = workspace
        self.jobs = jobs
        self.failures: dict[str, Failure] = {}
        self.results: dict[str, object] = {}

    def result(self, job: Job[T], value: object) -> None:
        """Keep `value` (anything msgspec can encode) as the job's result, shown by
        its status; a single-job handler's return value is kept the same way."""
        self.results[job.id] = value

    def fail(self, job: Job[T], error: BaseException | str) -> None:
        """Mark one job failed; the others still complete.

        Like a raise from a single-job handler: `Retry(after=...)` picks the delay,
        `Reject(...)` dead-letters the job at once, anything else is retried with
        the function's backoff until its last attempt.
        """
        self.failures[job.id] = Failure.of(error)

    def __len__(self) -> int:
        return len(self.jobs)


def describe(error: BaseException) -> str:
    """How a handler's exception is recorded on its job."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# A failure's traceback keeps the innermost frames, where the cause usually is, and
# at most this many bytes of text (its end): kept with each failed attempt in Redis.
TRACEBACK_FRAMES = 20
TRACEBACK_BYTES = 8 * 1024
_CUT = "(traceback cut to its last 8 KiB)\n"


def traceback_of(error: BaseException) -> str:
    """`error`'s traceback as Python prints it, bounded; "" for one never raised
    (`batch.fail(job, ValueError(...))` with an exception made on the spot)."""
    if error.__traceback__ is None:
        return ""
    text = "".join(traceback.format_exception(error, limit=-TRACEBACK_FRAMES))
    data = text.encode()
    if len(data) <= TRACEBACK_BYTES:
        return text
    tail = data[len(data) - TRACEBACK_BYTES + len(_CUT) :]
    return _CUT + tail.decode(errors="ignore")


class Failure(msgspec.Struct, frozen=True):
    """Why one job's attempt failed and what the handler asked to happen next."""

    error: str
    # Retry after this long instead of the function's backoff.
    after_s: float | None = None
    # Dead-letter now: retrying cannot help.
    final: bool = False
    # Where it was raised (traceback_of): "" for a timeout, a `Retry` (the handler's
    # own choice, not a fault) or an error given as text.
    traceback: str = ""
    # The exception itself, for the log line and the span of the attempt; never
    # stored, and dropped with the failure once the attempt is settled.
    exception: BaseException | None = None

    @classmethod
    def of(cls, error: BaseException | str) -> Failure:
        if isinstance(error, str):
            return cls(error)
        if isinstance(error, Retry):
            return cls(describe(error), after_s=error.after_s)
        return cls(
            describe(error),
            final=isinstance(error, Reject),
            traceback=traceback_of(error),
            exception=error,
        )


class Options(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the runtime runs one function. Checked when the function is declared."""

    batch_size: int = 100
    # Wait up to this long for a batch to fill (AWS Lambda's MaximumBatchingWindow):
    # fewer, fuller calls for a trickle of jobs, at up to this much latency.
    batch_window_ms: int = 0
    concurrency: int = 16
    timeout_s: float = 30.0
    # Attempts a job gets; a failed one is retried after a delay drawn uniformly
    # below min(backoff_cap_s, backoff_base_s * 2**(attempt - 1)) (full jitter).
    attempts: int = 3
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 3600.0
    # A job whose worker died while it ran this many times is dead-lettered (the
    # jobs only held beside it, or whose call had ended, are not charged; a first
    # run counts once a later one was cut by a crash: runtime.intake, streams.suspects).
    max_deliveries: int = 5
    # A held job idle this long is presumed lost and reclaimed by another worker;
    # heartbeats keep a long-running job's claim alive well within it.
    visibility_timeout_s: float = 60.0
    partitions: int = 1
    # Fairness: at most this many unread jobs of one workspace wait in the stream
    # (0: batch_size); the rest wait in the workspace's backlog, in priority
    # order, and enter as workers read. Another workspace's new job is then at
    # most this many jobs behind each busy workspace, never behind a whole campaign.
    workspace_share: int = 0
    # Rate limits, jobs started per second: for the function (all workspaces
    # together) and for each workspace; 0 is none. Bursts of up to rate_burst_s
    # seconds' worth start at once. Overrides set at run time win (runtime.client.limits).
    rate_per_s: float = 0.0
    workspace_rate_per_s: float = 0.0
    rate_burst_s: float = 1.0
    # Records of finished jobs (completed, cancelled, expired) are kept this long,
    # and at most this many per partition, the newest.
    retention_s: float = 86_400.0
    retention_count: int = 100_000
    # Dead letters, with their jobs' records, are kept this long and at most this
    # many per partition, the newest (BullMQ's removeOnFail): failures must not
    # grow Redis's memory without bound. Trimmed as jobs are dead-lettered.
    dead_retention_s: float = 7 * 86_400.0
    dead_retention_count: int = 10_000
    max_payload_bytes: int = 256 * 1024
    topics: tuple[str, ...] = ()

    @property
    def share(self) -> int:
        """Unread jobs of one workspace the stream holds (`workspace_share`)."""
        return self.workspace_share or self.batch_size

    def __post_init__(self) -> None:
        checks = (
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (0 <= self.batch_window_ms <= 60_000, "batch_window_ms must be 0 to 60000"),
            (
                # Jobs wait out the window before they are held and heartbeaten.
                self.batch_window_ms < self.visibility_timeout_s * 1000 / 3,
                "batch_window_ms must be under a third of the visibility timeout",
            ),
            (self.concurrency >= 1, "concurrency must be at least 1"),
            (self.timeout_s > 0, "timeout must be positive"),
            (1 <= self.attempts <= 1000, "attempts must be 1 to 1000"),
            (self.backoff_base_s > 0, "backoff_base_s must be positive"),
            (self.backoff_cap_s >= self.backoff_base_s, "backoff_cap_s must be >= backoff_base_s"),
            (self.max_deliveries >= 1, "max_deliveries must be at least 1"),
            (self.visibility_timeout_s >= 1, "visibility_timeout must be at least 1 s"),
            (1 <= self.partitions <= 1024, "partitions must be 1 to 1024"),
            (self.workspace_share >= 0, "workspace_share must be 0 (batch_size) or more"),
            (self.retention_s > 0, "retention must be positive"),
            (self.retention_count >= 1, "retention_count must be at least 1"),
            (self.dead_retention_s > 0, "dead_retention_s must be positive"),
            (self.dead_retention_count >= 1, "dead_retention_count must be at least 1"),
            (_no_rate_or_one(self.rate_per_s), f"rate_per_s must be 0 or {RATES}"),
            (
                _no_rate_or_one(self.workspace_rate_per_s),
                f"workspace_rate_per_s must be 0 or {RATES}",
            ),
            (self.rate_burst_s > 0, "rate_burst_s must be positive"),
            (self.max_payload_bytes > 0, "max_payload_bytes must be positive"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigurationError(message)


class FunctionOptions(TypedDict, total=False):
    """The options `function` and `batch_function` take, as keyword arguments: those
    of `Options`, kept in step with it by a test, so mypy catches a misspelt or
    ill-typed one where it is written."""

    batch_size: int
    batch_window_ms: int
    concurrency: int
    timeout_s: float
    attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    max_deliveries: int
    visibility_timeout_s: float
    partitions: int
    workspace_share: int
    rate_per_s: float
    workspace_rate_per_s: float
    rate_burst_s: float
    retention_s: float
    retention_count: int
    dead_retention_s: float
    dead_retention_count: int
    max_payload_bytes: int
    topics: tuple[str, ...]


RATES = f"from {MIN_RATE_PER_S:.3g} (one a day) to {MAX_RATE_PER_S:g}"


def _no_rate_or_one(rate: float) -> bool:
    return rate == 0 or MIN_RATE_PER_S <= rate <= MAX_RATE_PER_S


BatchHandler = Callable[[Batch[T]], Awaitable[None]]
JobHandler = Callable[[Job[T]], Awaitable[object]]
# A plain `def` handler: it runs in a thread of the function's own, so blocking
# code (a sync SDK, a CPU-bound step) does not stop the worker's event loop and
# with it the heartbeats that keep its jobs claimed.
SyncBatchHandler = Callable[[Batch[T]], None]
SyncJobHandler = Callable[[Job[T]], object]


class Function(Generic[T]):
    """A declared handler: its name, input type, options and batch-shaped callable."""

    __slots__ = (
        "batched",
        "decoder",
        "example",
        "handler",
        "input",
        "name",
        "on_start",
        "options",
    )

    def __init__(
        self,
        name: str,
        input: type[T],
        handler: BatchHandler[T],
        options: Options,
        *,
        batched: bool,
        example: T | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.name = check_function_name(name)
        self.input = input
        self.handler = handler
        self.options = options
        # A single-job handler gets batches of one: the runtime has one code path.
        self.batched = batched
        self.example = example
        # Called once by each worker that runs the function, before its first job,
        # where `current_settings()` is the worker's: to check the function's
        # settings and warn while the operator watches (an exception stops the worker).
        self.on_start = on_start
        self.decoder = msgspec.msgpack.Decoder(input)

    @property
    def topics(self) -> tuple[str, ...]:
        """What this function is subscribed to: its own name plus declared topics."""
        return (self.name, *self.options.topics)

    def __repr__(self) -> str:
        return f"Function({self.name!r})"


def _single(handler: JobHandler[T]) -> BatchHandler[T]:
    async def run(batch: Batch[T]) -> None:
        job = batch.jobs[0]
        result = await handler(job)
        if result is not None:
            batch.results[job.id] = result

    run.__qualname__ = getattr(handler, "__qualname__", "handler")
    return run


def _in_threads(name: str, threads: int, handler: Callable[[Any], object]) -> Callable[..., Any]:
    """Run a plain `def` handler in a pool of `threads` (the function's concurrency).

    A thread cannot be cancelled: when the watchdog's timeout (or shutdown past
    the grace period) cancels the call, the call goes on waiting for the thread
    and its outcome stands, rather than the job being retried, and so run twice,
    while the thread still runs it.
    """
    pool: list[ThreadPoolExecutor] = []

    async def run(arg: object) -> object:
        if not pool:
            pool.append(ThreadPoolExecutor(threads, thread_name_prefix=f"sluice-{name}"))
        loop = asyncio.get_running_loop()
        # The caller's context (log fields, the trace) goes with the call.
        future = loop.run_in_executor(pool[0], contextvars.copy_context().run, handler, arg)
        warned = False
        while True:
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                if not warned:
                    warned = True
                    log.warning(
                        "%s: a plain def handler cannot be stopped: waiting for its thread", name
                    )

    run.__qualname__ = getattr(handler, "__qualname__", "handler")
    return run


def function(
    name: str,
    *,
    input: type[T],
    example: T | None = None,
    on_start: Callable[[], None] | None = None,
    **options: Unpack[FunctionOptions],
) -> Callable[[JobHandler[T] | SyncJobHandler[T]], Function[T]]:
    """Declare a handler that receives one `Job` at a time: an `async def`, or a
    plain `def`, which runs in a thread (one per unit of concurrency).

    Options are those of `Options` (batch_size, concurrency, timeout_s, ...);
    a misspelt or ill-typed option raises at declaration, not at run time.
    """
    opts = _options(name, options)

    def declare(handler: JobHandler[T] | SyncJobHandler[T]) -> Function[T]:
        if not inspect.iscoroutinefunction(handler):
            handler = _in_threads(name, opts.concurrency, handler)
        single = _single(handler)
        return Function(
            name, input, single, opts, batched=False, example=example, on_start=on_start
        )

    return declare


def batch_function(
    name: str,
    *,
    input: type[T],
    example: T | None = None,
    on_start: Callable[[], None] | None = None,
    **options: Unpack[FunctionOptions],
) -> Callable[[BatchHandler[T] | SyncBatchHandler[T]], Function[T]]:
    """Declare a handler that receives a `Batch` of jobs of one workspace per call
    (a plain `def` runs in a thread, as for `function`)."""
    opts = _options(name, options)

    def declare(handler: BatchHandler[T] | SyncBatchHandler[T]) -> Function[T]:
        if not inspect.iscoroutinefunction(handler):
            handler = _in_threads(name, opts.concurrency, handler)
        return Function(
            name, input, handler, opts, batched=True, example=example, on_start=on_start
        )

    return declare


def _options(name: str, options: FunctionOptions) -> Options:
    try:
        return msgspec.convert(options, Options)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"function {name!r}: {exc}") from exc
