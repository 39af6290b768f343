"""Call a handler on one batch and say which jobs failed."""

from __future__ import annotations

import logging
from typing import Any

from runtime.declare import Batch, Function, describe

log = logging.getLogger(__name__)


async def invoke(fn: Function[Any], batch: Batch[Any]) -> dict[str, str]:
    """Run the handler; return failed job ids with their errors (empty: all succeeded).

    Cancellation propagates: the loop's watchdog turns its own into a timeout, and
    shutdown past the grace period hands the jobs back instead of failing them.
    """
    try:
        await fn.handler(batch)
    except Exception as exc:
        return _all_failed(fn, batch, describe(exc))
    if batch.failures:
        log.warning(
            "%s: %d of %d jobs failed in workspace %s",
            fn.name,
            len(batch.failures),
            len(batch),
            batch.workspace,
        )
    return batch.failures


def timed_out(fn: Function[Any], batch: Batch[Any]) -> dict[str, str]:
    """The outcome of a call the watchdog cancelled for outrunning the timeout."""
    return _all_failed(fn, batch, f"timed out after {fn.options.timeout_s:g} s")


def _all_failed(fn: Function[Any], batch: Batch[Any], error: str) -> dict[str, str]:
    ids = [job.id for job in batch.jobs]
    log.warning("%s: job %s failed: %s", fn.name, ids[0] if len(ids) == 1 else ids, error)
    return dict.fromkeys(ids, error)
