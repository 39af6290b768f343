"""Call a handler on one batch, under the function's timeout, and say which jobs failed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runtime.declare import Batch, Function, describe

log = logging.getLogger(__name__)


async def invoke(fn: Function[Any], batch: Batch[Any]) -> dict[str, str]:
    """Run the handler; return failed job ids with their errors (empty: all succeeded).

    Cancellation (shutdown past the grace period) propagates: those jobs are
    handed back, not failed.
    """
    timeout_s = fn.options.timeout_s
    try:
        async with asyncio.timeout(timeout_s) as scope:
            await fn.handler(batch)
    except TimeoutError as exc:
        error = f"timed out after {timeout_s:g} s" if scope.expired() else describe(exc)
        return _all_failed(fn, batch, error)
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


def _all_failed(fn: Function[Any], batch: Batch[Any], error: str) -> dict[str, str]:
    ids = [job.id for job in batch.jobs]
    log.warning("%s: job %s failed: %s", fn.name, ids[0] if len(ids) == 1 else ids, error)
    return dict.fromkeys(ids, error)
