"""What deliveries become before any handler runs: jobs ready to run, or outcomes at once;
and the handler calls the ready jobs make, once the rate limits have let them run.

A delivery that cannot or must not run is settled without its handler: an
undecodable envelope or a poison job (running when its worker died too often) is dead, a payload
the input type refuses is dead (it would fail the same way every attempt, and
is replayed once the function takes it), a job past its expiry is expired. The
rest are ready, and become handler calls: one per workspace group for a batch
handler, one per job otherwise, and one per job taken over from a lost worker.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import Any

import msgspec

from sluice.runtime.declare import Batch, Function, Job
from sluice.runtime.worker.outcome import dead, expired
from sluice.streams import envelope as env
from sluice.streams.consume import Delivery
from sluice.streams.settle import Dead, Outcome

log = logging.getLogger(__name__)


class Ready(msgspec.Struct, gc=False):
    """A job that may run: its stream entry, the job its handler gets, its envelope."""

    entry_id: str
    job: Job[Any]
    envelope: env.Envelope
    # Taken over from a lost worker (see Call).
    suspect: bool = False
    alone: bool = False


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
    # checked to be still this worker's before it runs (runtime.worker.lanes).
    read_ms: int = 0


class Intake(msgspec.Struct):
    # Jobs to run (unless the limits say otherwise), those taken over first.
    ready: list[Ready]
    outcomes: list[Outcome]
    # (entry id, job id) of every delivery taken on: run or settled.
    taken: list[tuple[str, str]]
    # When it was read (host clock, ms).
    read_ms: int


def take_in(
    fn: Function[Any], deliveries: list[Delivery], held: Container[str], now_ms: int
) -> Intake:
    """Sort `deliveries` into ready jobs and immediate outcomes; skip those in
    `held` (reclaimed back from ourselves: a call for them is under way)."""
    max_deliveries = fn.options.max_deliveries
    ready: list[Ready] = []
    suspects: list[Ready] = []
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
            if d.starts and d.starts + 1 >= max_deliveries:
                # Charged only once a start of it was cut by a crash (streams.suspects):
                # a job only held by the dead workers is not. Its first run is never
                # marked: once it crashed a worker as a suspect, that run counts too.
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
                        suspects.append(Ready(d.entry_id, job, envelope, True, d.starts > 0))
                    else:
                        ready.append(Ready(d.entry_id, job, envelope))
        taken.append((d.entry_id, envelope.id))
    return Intake(suspects + ready if suspects else ready, outcomes, taken, now_ms)


def calls(fn: Function[Any], ready: list[Ready], read_ms: int) -> list[Call]:
    """The handler calls that run `ready`: one per workspace group for a batch
    handler, one per job otherwise; a job taken over from a lost worker in a call
    of its own, so a crash can be charged to the one job that was running
    (streams.suspects)."""
    if not fn.batched:
        return [
            Call(
                Batch(r.job.workspace, [r.job]),
                [r.entry_id],
                [r.envelope],
                r.suspect,
                r.alone,
                read_ms,
            )
            for r in ready
        ]
    alone: list[Call] = []
    grouped: dict[str, Call] = {}
    for r in ready:
        workspace = r.job.workspace
        if r.suspect:
            alone.append(
                Call(Batch(workspace, [r.job]), [r.entry_id], [r.envelope], True, r.alone, read_ms)
            )
            continue
        call = grouped.get(workspace)
        if call is None:
            grouped[workspace] = Call(
                Batch(workspace, [r.job]), [r.entry_id], [r.envelope], read_ms=read_ms
            )
        else:
            call.batch.jobs.append(r.job)
            call.entry_ids.append(r.entry_id)
            call.envelopes.append(r.envelope)
    return [*alone, *grouped.values()]


def _dead(fn: Function[Any], d: Delivery, envelope: env.Envelope, reason: str) -> Dead:
    log.error("%s: job %s dead-lettered: %s", fn.name, envelope.id, reason)
    return dead(d.entry_id, envelope, reason, d.envelope)
