"""What deliveries become before any handler runs: calls to make, or outcomes at once.

A delivery that cannot or must not run is settled without its handler: an
undecodable envelope or a poison job (running when its worker died too often) is dead, a payload
the input type refuses is dead (it would fail the same way every attempt, and
is replayed once the function takes it), a job past its expiry is expired. The
rest become handler calls: one per workspace group for a batch handler, one per
job otherwise, and one per job taken over from a lost worker.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import Any

import msgspec

from runtime.declare import Batch, Function, Job
from runtime.worker.outcome import dead, expired
from streams import envelope as env
from streams.consume import Delivery
from streams.settle import Dead, Outcome

log = logging.getLogger(__name__)


class Call(msgspec.Struct):
    """One handler invocation: a batch, and the stream entry and envelope of each job."""

    batch: Batch[Any]
    entry_ids: list[str]
    envelopes: list[env.Envelope]
    # A job taken over from a lost worker, called alone: its start is marked in
    # Redis first (streams.suspects), and once it was running at a crash already,
    # nothing else runs in the process beside it (runtime.worker.isolation).
    suspect: bool = False
    alone: bool = False
    # When it was read (host clock, ms): a call that waited long for a lane is
    # checked to be still this worker's before it runs (runtime.worker.loop).
    read_ms: int = 0


class Intake(msgspec.Struct):
    calls: list[Call]
    outcomes: list[Outcome]
    # (entry id, job id) of every delivery taken on: run or settled.
    taken: list[tuple[str, str]]


def take_in(
    fn: Function[Any], deliveries: list[Delivery], held: Container[str], now_ms: int
) -> Intake:
    """Sort `deliveries` into calls and immediate outcomes; skip those in `held`
    (reclaimed back from ourselves: a call for them is under way)."""
    max_deliveries = fn.options.max_deliveries
    ready: list[tuple[str, Job[Any], env.Envelope]] = []
    # Taken over from a lost worker: each in a call of its own, so a crash can
    # be charged to the one job that was running (streams.suspects).
    suspects: list[Call] = []
    outcomes: list[Outcome] = []
    taken: list[tuple[str, str]] = []
    for d in deliveries:
        if d.entry_id in held:
            continue
        try:
            envelope = env.decode(d.envelope)
        except msgspec.DecodeError as exc:
            # Not even an id to record it by: a made-up one, for the dead letter.
            envelope = env.Envelope(f"corrupt-{d.entry_id}", fn.name, "", msgspec.Raw(b""), 0)
            outcomes.append(_dead(fn, d, envelope, f"undecodable envelope: {exc}"))
        else:
            if d.deliveries > 1 and d.starts + 1 >= max_deliveries:
                # Its first run is not marked (streams.suspects): it counts as one.
                reason = (
                    f"its worker died while it ran, {d.starts + 1} times "
                    f"(max_deliveries={max_deliveries})"
                )
                outcomes.append(_dead(fn, d, envelope, reason))
            elif envelope.expires_ms and now_ms > envelope.expires_ms:
                # The host's clock, as the publisher's expiry is a wall-clock time.
                outcomes.append(expired(d.entry_id, envelope))
            else:
                try:
                    data = fn.decoder.decode(envelope.payload)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    reason = f"payload does not match {fn.input.__name__}: {exc}"
                    outcomes.append(_dead(fn, d, envelope, reason))
                else:
                    job = Job(
                        envelope.id, envelope.workspace, data, envelope.attempt, d.deliveries,
                        envelope.created_ms,
                    )  # fmt: skip
                    if d.deliveries > 1:
                        suspects.append(
                            Call(Batch(job.workspace, [job]), [d.entry_id], [envelope], True,
                                 d.starts > 0, now_ms)
                        )  # fmt: skip
                    else:
                        ready.append((d.entry_id, job, envelope))
        taken.append((d.entry_id, envelope.id))
    if fn.batched:
        calls = _by_workspace(ready, now_ms)
    else:
        calls = [
            Call(Batch(job.workspace, [job]), [eid], [e], read_ms=now_ms) for eid, job, e in ready
        ]
    return Intake(suspects + calls if suspects else calls, outcomes, taken)


def _dead(fn: Function[Any], d: Delivery, envelope: env.Envelope, reason: str) -> Dead:
    log.error("%s: job %s dead-lettered: %s", fn.name, envelope.id, reason)
    return dead(d.entry_id, envelope, reason, d.envelope)


def _by_workspace(ready: list[tuple[str, Job[Any], env.Envelope]], now_ms: int) -> list[Call]:
    calls: dict[str, Call] = {}
    for entry_id, job, envelope in ready:
        call = calls.get(job.workspace)
        if call is None:
            calls[job.workspace] = Call(
                Batch(job.workspace, [job]), [entry_id], [envelope], read_ms=now_ms
            )
        else:
            call.batch.jobs.append(job)
            call.entry_ids.append(entry_id)
            call.envelopes.append(envelope)
    return list(calls.values())
