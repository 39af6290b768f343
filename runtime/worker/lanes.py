"""The lanes of a partition loop: `concurrency` tasks that take ready calls in turn,
run the handler under the watchdog, and hand each job's outcome to the settler.

Before a call runs, a lane passes the isolation gate (a suspect runs alone in
its process), counts a suspect's start in Redis, and checks that a call which
waited long for a lane still holds its jobs; once a suspect's handler returned,
the lane uncounts its start before it leaves the gate.
"""

from __future__ import annotations

import asyncio
import collections
import logging

import msgspec

from sluice.runtime.declare import Batch, Failure
from sluice.runtime.guard import Guard
from sluice.runtime.telemetry import instruments, logs, tracing
from sluice.runtime.worker.intake import Call
from sluice.runtime.worker.invoke import invoke, timed_out
from sluice.runtime.worker.isolation import Gate
from sluice.runtime.worker.outcome import completed, failed
from sluice.runtime.worker.partition import Partition
from sluice.runtime.worker.recorder import Recorder
from sluice.runtime.worker.settler import Settler
from sluice.runtime.worker.watchdog import Lane, expire_forever
from sluice.streams import envelope as env
from sluice.streams.claims import extend
from sluice.streams.errors import GroupMissing, RedisUnavailable
from sluice.streams.suspects import mark_ended, mark_started

log = logging.getLogger(__name__)


class Lanes:
    """Runs the calls handed to it, `concurrency` at a time, oldest first (or first
    when pushed so: a lost worker's jobs go ahead of the queue)."""

    def __init__(self, part: Partition, gate: Gate, settler: Settler, recorder: Recorder) -> None:
        self.part = part
        self.fn = part.fn
        self.gate = gate
        self.settler = settler
        self.recorder = recorder
        # A call that waited this long for a lane may have been taken over meanwhile.
        self.late_ms = int(part.fn.options.visibility_timeout_s * 500)
        # Calls waiting for a lane. A deque and one event rather than an
        # asyncio.Queue: the queue's put and get were a fifth of the worker's time
        # per job with a single-job no-op handler (bench profile).
        self.calls: collections.deque[Call] = collections.deque()
        self.ready = asyncio.Event()
        self.closed = False
        # Calls running now: while any run, the settler waits a few loop turns
        # for their outcomes to share its round trip.
        self.busy = 0
        self.lanes: list[Lane] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> asyncio.Task[None]:
        """Start the lanes; return the watchdog that times their calls out."""
        self.lanes = [Lane() for _ in range(self.fn.options.concurrency)]
        for lane in self.lanes:
            lane.task = asyncio.create_task(self._run(lane))
        self.tasks = [lane.task for lane in self.lanes]
        return asyncio.create_task(expire_forever(self.lanes, self.fn.options.timeout_s))

    def push(self, calls: list[Call], *, first: bool = False) -> None:
        """Queue `calls` (`first`: ahead of the others)."""
        if first:
            self.calls.extendleft(reversed(calls))
        else:
            self.calls.extend(calls)
        self.ready.set()

    def close(self) -> None:
        """Run nothing more that has not started; each lane ends after its call."""
        self.calls.clear()
        self.closed = True
        self.ready.set()

    def idle(self) -> bool:
        """Nothing queued or running: no outcome is coming."""
        return self.busy == 0 and not self.calls

    def running(self) -> list[str]:
        """The calls in the lanes now, for a report of a blocked loop (runtime.worker.stall)."""
        return [
            f"{self.fn.name} job {', '.join(e.id for e in lane.call.envelopes)}"
            for lane in self.lanes
            if isinstance(lane.call, Call)
        ]

    async def _run(self, lane: Lane) -> None:
        calls = self.calls
        settler = self.settler
        clock = asyncio.get_running_loop().time
        fn = self.fn
        part = self.part
        while True:
            if not calls or part.paused:
                # Closed, the calls are gone: a paused lane ends too.
                if self.closed:
                    return
                self.ready.clear()
                await self.ready.wait()
                continue
            call = calls.popleft()
            # The gate's fast path inline: a shared call while no suspect runs.
            gate = self.gate
            if call.alone or gate.closed():
                await gate.enter(call.alone)
            else:
                gate.running += 1
            try:
                if env.now_ms() - call.read_ms > self.late_ms:
                    kept = await self._still_held(call)
                    if kept is None:
                        gate.leave(call.alone)
                        continue
                    call = kept
                if call.suspect:
                    # Once through the gate: a suspect waiting there must not be
                    # charged with a crash of the one running alone.
                    await self._mark_started(call)
            except BaseException:
                gate.leave(call.alone)
                raise
            batch = call.batch
            logs.job.set((fn.name, batch.workspace, "" if len(batch) > 1 else batch.jobs[0].id))
            self.busy += 1
            lane.call, lane.started = call, clock()
            started_ms = env.now_ms()
            self.recorder.started(call.envelopes, started_ms)
            self.recorder.begun(call.entry_ids, lane.started)
            if instruments.enabled():
                instruments.started(fn.name, call.envelopes, started_ms)
            try:
                try:
                    if tracing.enabled():
                        failures = await self._invoke_traced(call)
                    else:
                        failures = await invoke(fn, call.batch)
                except asyncio.CancelledError:
                    if lane.expired is not call:
                        raise  # shutdown past the grace period: the job is handed back
                    _uncancel(lane.task)
                    failures = timed_out(fn, call.batch)
                else:
                    if lane.expired is call:
                        _uncancel(lane.task)  # the handler swallowed our cancels: its result stands
                finally:
                    lane.call = None
                    self.busy -= 1
                    self.recorder.ended(call.entry_ids)
                if call.suspect:
                    # Before the gate lets the next suspect in: a crash it causes
                    # must not be charged to this call, which ended.
                    await self._mark_ended(call)
            finally:
                gate.leave(call.alone)
            took = clock() - lane.started
            self.recorder.call(call.batch.workspace, took)
            if instruments.enabled():
                instruments.called(fn.name, took)
            append = settler.outbox.append
            results = call.batch.results
            ran_ms = round(took * 1000)
            done_ms = started_ms + ran_ms
            for entry_id, envelope in zip(call.entry_ids, call.envelopes, strict=True):
                failure = failures.get(envelope.id) if failures else None
                if failure is None:
                    self.recorder.completed(envelope, done_ms)
                    append(completed(entry_id, envelope, results.get(envelope.id), ran_ms))
                else:
                    append(failed(fn, entry_id, envelope, failure, ran_ms))
            settler.ready.set()

    async def _still_held(self, call: Call) -> Call | None:
        """The part of a late call that is still this worker's, claims renewed.

        A worker that froze (a stopped process, a long GC pause, a blocked loop)
        past the visibility timeout finds its queued jobs taken over, and maybe
        finished, by another: settling them would be fenced, but running them
        again is the harm. What Redis cannot confirm (it is away) runs.
        """
        part = self.part
        try:
            extension = await extend(part.client, part.keys, part.consumer, call.entry_ids)
        except RedisUnavailable:
            return call
        except GroupMissing:
            await part.lost(call.entry_ids)
            return None
        gone = {*extension.lost, *extension.gone}
        if not gone:
            return call
        for eid in gone:
            part.held.pop(eid, None)
        part.room.set()
        log.warning("%s: %d late jobs not run: another worker took them over", part.keys, len(gone))
        keep = [i for i, eid in enumerate(call.entry_ids) if eid not in gone]
        if not keep:
            return None
        return msgspec.structs.replace(
            call,
            batch=Batch(call.batch.workspace, [call.batch.jobs[i] for i in keep]),
            entry_ids=[call.entry_ids[i] for i in keep],
            envelopes=[call.envelopes[i] for i in keep],
        )

    async def _mark_started(self, call: Call) -> None:
        """Count the start of a suspect's call in Redis before it runs: run unmarked,
        a crash it causes would not be charged to it."""
        part = self.part
        await Guard(part.health, f"{part.keys}: marking a suspect job").until_done(
            lambda: mark_started(part.client, part.keys, call.entry_ids)
        )

    async def _mark_ended(self, call: Call) -> None:
        """Uncount the start of a suspect's call once its handler returned: its
        settle comes later (its own round trip, after a batch of others), and a
        crash meanwhile would be charged to a call that had ended."""
        part = self.part
        await Guard(part.health, f"{part.keys}: marking a suspect job ended").until_done(
            lambda: mark_ended(part.client, part.keys, call.entry_ids)
        )

    async def _invoke_traced(self, call: Call) -> dict[str, Failure]:
        """`invoke` inside the call's spans (runtime.telemetry.tracing); apart, so that with
        tracing off a call pays for no context manager."""
        with tracing.processing(self.fn.name, call.envelopes, self.fn.batched) as spans:
            failures = await invoke(self.fn, call.batch)
            for job_id, why in failures.items():
                tracing.failed(spans[job_id], why)
            return failures


def _uncancel(task: asyncio.Task[None]) -> None:
    """Clear every cancel the watchdog sent this call: it may have sent several, when
    the first was swallowed (see runtime.worker.watchdog)."""
    while task.cancelling():
        task.uncancel()
