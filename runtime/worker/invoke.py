"""Call a handler on one batch and say which jobs failed."""

from __future__ import annotations

import logging
from typing import Any

from sluice.runtime.declare import Batch, Failure, Function

log = logging.getLogger(__name__)


async def invoke(fn: Function[Any], batch: Batch[Any]) -> dict[str, Failure]:
    """Run the handler; return failed job ids with their failures (empty: all succeeded).

    Cancellation propagates: the lanes' watchdog turns its own into a timeout, and
    shutdown past the grace period hands the jobs back instead of failing them.
    """
    try:
        await fn.handler(batch)
    except Exception as exc:
        return _all_failed(fn, batch, Failure.of(exc))
    if batch.failures:
        log.warning(
            "%s: %d of %d jobs failed in workspace %s",
            fn.name,
            len(batch.failures),
            len(batch),
            batch.workspace,
        )
    return batch.failures


def timed_out(fn: Function[Any], batch: Batch[Any]) -> dict[str, Failure]:
    """The outcome of a call the watchdog cancelled for outrunning the timeout."""
    return _all_failed(fn, batch, Failure(f"timed out after {fn.options.timeout_s:g} s"))


def _all_failed(fn: Function[Any], batch: Batch[Any], failure: Failure) -> dict[str, Failure]:
    ids = [job.id for job in batch.jobs]
    # With the traceback (a JSON line's `exception`), as the job's record keeps it.
    log.warning(
        "%s: job %s failed: %s",
        fn.name,
        ids[0] if len(ids) == 1 else ids,
        failure.error,
        exc_info=failure.exception,
    )
    return dict.fromkeys(ids, failure)
