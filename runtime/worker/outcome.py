"""Turn what happened to one job into its outcome: done, retry later, deferred, dead, or expired."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from sluice.runtime.backoff import retry_delay_s
from sluice.runtime.declare import Failure, Function
from sluice.streams import envelope as env
from sluice.streams.keys import links
from sluice.streams.settle import Completed, Dead, Deferred, Expired, Retried

log = logging.getLogger(__name__)

# An error kept in a job's history is cut to this many characters, so a handler
# that raises with a huge message cannot bloat every retry's envelope.
MAX_ERROR_CHARS = 2000
# The tracebacks of this many of a job's newest failed attempts are kept (each
# bounded by runtime.declare.traceback_of): a retried or dead job's envelope holds
# them, and the attempts of one job mostly fail alike.
KEPT_TRACEBACKS = 3
# A handler's result is kept on its record up to this size.
MAX_RESULT_BYTES = 64 * 1024

_results = msgspec.msgpack.Encoder()


def completed(
    entry_id: str, envelope: env.Envelope, result: object = None, ran_ms: int = 0
) -> Completed:
    """The handler returned `result` after running `ran_ms`."""
    e = envelope
    if e.key or e.tags or result is not None:
        return Completed(
            entry_id, e.id, e.workspace, e.attempt, ran_ms, links_of(e), _encode_result(e, result)
        )
    return Completed(entry_id, e.id, e.workspace, e.attempt, ran_ms)


def expired(entry_id: str, envelope: env.Envelope) -> Expired:
    """Picked up after its `expires_ms`: recorded as expired and never run."""
    e = envelope
    return Expired(entry_id, e.id, e.workspace, e.attempt - 1, links_of(e))


def deferred(
    entry_id: str, envelope: env.Envelope, *, delay_ms: int = 0, due_ms: int = 0
) -> Deferred:
    """Over the rate limits, with no slot within reach: back to the delayed set until
    `due_ms` (Redis time), or `delay_ms` from now, with no attempt charged and
    nothing counted as failed."""
    e = envelope
    return Deferred(
        entry_id=entry_id,
        job_id=e.id,
        workspace=e.workspace,
        attempt=e.attempt - 1,
        envelope=env.encode(e),
        priority=e.priority,
        links=links_of(e),
        delay_ms=delay_ms,
        due_ms=due_ms,
    )


def dead(
    entry_id: str, envelope: env.Envelope, reason: str, letter: bytes, ran_ms: int = 0
) -> Dead:
    """Dead-lettered: before its handler ran (poison, a payload it cannot take), or
    after its last attempt ran `ran_ms`."""
    e = envelope
    return Dead(entry_id, e.id, e.workspace, e.attempt, reason, letter, links_of(e), ran_ms)


def _encode_result(envelope: env.Envelope, result: object) -> bytes:
    """The result as msgpack; one that cannot be encoded is logged and not kept (the
    job did complete: failing it now would run it again)."""
    if result is None:
        return b""
    try:
        encoded = _results.encode(result)
    except (TypeError, msgspec.EncodeError) as exc:
        log.warning("job %s: result not kept, msgspec cannot encode it: %s", envelope.id, exc)
        return b""
    if len(encoded) > MAX_RESULT_BYTES:
        log.warning(
            "job %s: result of %d bytes not kept (limit %d)",
            envelope.id,
            len(encoded),
            MAX_RESULT_BYTES,
        )
        return b""
    return encoded


def links_of(envelope: env.Envelope) -> str:
    return links(envelope.workspace, envelope.id, envelope.key, envelope.tags)


def failed(
    fn: Function[Any], entry_id: str, envelope: env.Envelope, failure: Failure, ran_ms: int = 0
) -> Retried | Dead:
    """Retry with the function's backoff (or the handler's `Retry(after=...)`) until
    the last attempt; then, or at once for `Reject`, dead-letter with every error
    (and the time the last attempt ran)."""
    error = failure.error[:MAX_ERROR_CHARS]
    errors = (*envelope.errors, error)
    tracebacks = _tracebacks(envelope, failure.traceback)
    opts = fn.options
    if failure.final or envelope.attempt >= opts.attempts:
        letter = msgspec.structs.replace(envelope, errors=errors, tracebacks=tracebacks)
        return dead(entry_id, envelope, error, env.encode(letter), ran_ms)
    delay_s = failure.after_s
    if delay_s is None:
        delay_s = retry_delay_s(envelope.attempt, opts.backoff_base_s, opts.backoff_cap_s)
    delay_ms = round(delay_s * 1000)
    following = msgspec.structs.replace(
        envelope,
        attempt=envelope.attempt + 1,
        errors=errors,
        tracebacks=tracebacks,
        due_ms=env.now_ms() + delay_ms,
    )
    return Retried(
        entry_id=entry_id,
        job_id=envelope.id,
        workspace=envelope.workspace,
        attempt=envelope.attempt,
        error=error,
        envelope=env.encode(following),
        delay_ms=delay_ms,
        priority=envelope.priority,
        links=links_of(envelope),
    )


def _tracebacks(envelope: env.Envelope, newest: str) -> tuple[str, ...]:
    """The envelope's tracebacks with `newest` added, beside its errors; () while
    there are none, so that no traceback field is stored for them."""
    if not newest and not envelope.tracebacks:
        return ()
    # Attempts before tracebacks were kept (an envelope of an older release) have "".
    missing = max(0, len(envelope.errors) - len(envelope.tracebacks))
    kept = (*("",) * missing, *envelope.tracebacks, newest)
    old = len(kept) - KEPT_TRACEBACKS
    return kept if old <= 0 else (*("",) * old, *kept[old:])
