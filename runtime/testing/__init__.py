"""Testing one's own functions: call a declared `Function` with data, no Redis needed.

    outcome = await call(send_sms, {"to": "+15550100", "body": "hi"})
    assert outcome == Completed(result=None)

The data goes the way a published event's does (checked against the input type,
msgpack and back), the handler runs as a worker runs it (a plain `def` in a
thread, `timeout_s` enforced), and the outcome says what the worker would do:
`Completed`, `Retried` (a `Retry(after=...)`), `Rejected` (a `Reject`) or
`Failed` (any other exception, or the timeout: with the traceback the job would
keep, and whether it would go to the dead letters). For end-to-end tests against
a private redis-server, see `sluice.runtime.testing.pytest` and `running`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from sluice.runtime.client.current import worker_context
from sluice.runtime.client.publish import Client, encode_input
from sluice.runtime.declare import Batch, Failure, Function, Job
from sluice.runtime.health import RedisHealth
from sluice.runtime.registry import Registry
from sluice.runtime.scheduler.host import Scheduler
from sluice.runtime.settings import Settings, from_env, use_settings
from sluice.runtime.worker.host import WorkerHost
from sluice.runtime.worker.invoke import invoke, timed_out
from sluice.streams import envelope as env
from sluice.streams.connection import RedisSettings, connect

__all__ = ["Completed", "Failed", "Outcome", "Rejected", "Retried", "call", "call_batch", "running"]


class Completed(msgspec.Struct, frozen=True):
    """The handler returned (`result`: what it returned, or gave `batch.result`)."""

    result: Any = None


class Retried(msgspec.Struct, frozen=True):
    """The handler raised `Retry(after=...)`: the next attempt after `after_s`."""

    after_s: float | None
    error: str


class Rejected(msgspec.Struct, frozen=True):
    """The handler raised `Reject(...)`: dead-lettered at once."""

    error: str
    traceback: str


class Failed(msgspec.Struct, frozen=True):
    """Any other exception, or the timeout: retried with backoff, or dead-lettered
    (`dead`) when this was the last of the function's attempts."""

    error: str
    traceback: str
    dead: bool
    # The exception itself (None for a timeout), to re-raise or inspect.
    exception: BaseException | None = None


Outcome = Completed | Retried | Rejected | Failed


async def call(
    fn: Function[Any],
    data: Any,
    *,
    workspace: str = "test",
    attempt: int = 1,
    id: str = "",
    settings: Settings | None = None,
) -> Outcome:
    """Run `fn` on one job of `data` (its input Struct or a dict); its outcome.

    `settings` are what `current_settings()` gives the handler (by default those
    of an empty environment)."""
    (outcome,) = await call_batch(
        fn, [data], workspace=workspace, attempt=attempt, ids=[id] if id else (), settings=settings
    )
    return outcome


async def call_batch(
    fn: Function[Any],
    data: Sequence[Any],
    *,
    workspace: str = "test",
    attempt: int = 1,
    ids: Sequence[str] = (),
    settings: Settings | None = None,
) -> list[Outcome]:
    """Run `fn` once on a batch of one job per item of `data` (a single-job function
    takes one); each job's outcome, in order."""
    if not fn.batched and len(data) != 1:
        raise ValueError(f"{fn.name} takes one job a call, not {len(data)}")
    now = env.now_ms()
    jobs = [
        Job(
            id=ids[i] if i < len(ids) else env.new_job_id(),
            workspace=workspace,
            data=fn.decoder.decode(encode_input(fn, item, i)),
            attempt=attempt,
            deliveries=1,
            created_ms=now,
        )
        for i, item in enumerate(data)
    ]
    batch: Batch[Any] = Batch(workspace, jobs)
    failures = await _run(fn, batch, settings or from_env({}))
    return [_outcome(fn, attempt, batch.results.get(j.id), failures.get(j.id)) for j in jobs]


async def _run(fn: Function[Any], batch: Batch[Any], settings: Settings) -> dict[str, Failure]:
    """`invoke` under the function's timeout, as the worker's watchdog applies it, in
    a task of its own that has `settings` (the caller's context keeps its own)."""
    context = contextvars.copy_context()
    context.run(use_settings, settings)
    task = asyncio.get_running_loop().create_task(invoke(fn, batch), context=context)
    done, _ = await asyncio.wait({task}, timeout=fn.options.timeout_s)
    if done:
        return task.result()
    task.cancel()
    try:
        # A plain def's thread cannot be stopped: its outcome stands (runtime.declare).
        return await task
    except asyncio.CancelledError:
        return timed_out(fn, batch)


def _outcome(fn: Function[Any], attempt: int, result: Any, failure: Failure | None) -> Outcome:
    if failure is None:
        return Completed(result)
    if failure.after_s is not None:
        return Retried(failure.after_s, failure.error)
    if failure.final:
        return Rejected(failure.error, failure.traceback)
    return Failed(
        failure.error, failure.traceback, attempt >= fn.options.attempts, failure.exception
    )


@contextlib.asynccontextmanager
async def running(
    functions: Sequence[Function[Any]],
    url: str = "",
    *,
    settings: Settings | None = None,
    scheduler: bool = True,
    recheck_s: float = 1.0,
    health: RedisHealth | None = None,
    registry: Registry | None = None,
) -> AsyncIterator[RedisHealth]:
    """A worker of `functions` (and, unless told not to, a scheduler for their due
    jobs) on this event loop, against the Redis of `url` or of `settings`; stopped
    on exit, within the grace period. Yields the health its loops report (`health`
    when given: a test that reads its outage reports, say). Its handlers'
    `current_client()` publishes to `registry` (default: `functions`).

    Without `settings`, reads block for 100 ms (production: 2 s), the time a stop
    waits for the worker's read to return: tests stop many workers."""
    if settings is None:
        settings = from_env({}, redis=RedisSettings(url=url), block_ms=100)
    client = connect(settings.redis)
    health = health or RedisHealth(settings.redis.url)
    stop = asyncio.Event()
    context = worker_context(Client(client, registry or Registry(functions)))
    host = WorkerHost(client, functions, settings, health)
    tasks = [asyncio.create_task(host.run(stop), context=context)]
    if scheduler:
        tasks.append(asyncio.create_task(Scheduler(client, functions, health, recheck_s).run(stop)))
    try:
        yield health
    finally:
        stop.set()
        _, hung = await asyncio.wait(tasks, timeout=settings.grace_s + 10)
        for task in hung:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=bool(hung))
        await client.aclose()
        if hung:
            raise RuntimeError("the worker did not stop within its grace period")
