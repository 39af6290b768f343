"""The consume loop of one function partition: read -> take in -> invoke -> settle.

Tasks, each with one job: a reader (XREADGROUP BLOCK, only while there is room;
after each read a refill call lets the workspaces' backlogs into the stream),
`concurrency` lanes that invoke the handler, a settler that writes every finished
outcome since its last call in one Lua call, a watchdog that cancels calls past
the function's timeout, a heartbeat that extends the claim on held entries, and a
reclaimer that takes over entries of lost workers, and a watcher of the pause flag.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import msgspec

from runtime.backoff import Backoff
from runtime.declare import Batch, Failure, Function
from runtime.health import RedisHealth
from runtime.lifecycle import sleep_unless, stop_task
from runtime.telemetry import instruments, logs, tracing
from runtime.worker.heartbeat import heartbeat_forever
from runtime.worker.intake import Call, Intake, take_in
from runtime.worker.invoke import invoke, timed_out
from runtime.worker.isolation import Gate
from runtime.worker.limiter import apply_limits, limited
from runtime.worker.outcome import completed, failed
from runtime.worker.reclaimer import reclaim_forever
from runtime.worker.recorder import Recorder, flush_forever, flush_once
from runtime.worker.watchdog import Lane, expire_forever
from streams import envelope as env
from streams.claims import Held, extend, leave
from streams.connection import Redis
from streams.consume import Delivery, Read, ensure_group, read, refill, taken
from streams.errors import RedisUnavailable
from streams.keys import PartitionKeys
from streams.pause import is_paused
from streams.ratelimit import overridden
from streams.settle import Outcome, settle
from streams.suspects import forget, mark_started

log = logging.getLogger(__name__)

# Loop turns the settler waits at most for more outcomes before it writes.
GATHER_TURNS = 8
# How often a worker looks whether its function was paused (runtime.client.pauses), and
# whether one declared without a rate has run-time limits (runtime.client.limits).
PAUSE_CHECK_S = 1.0


class LoopConfig(msgspec.Struct, frozen=True, kw_only=True):
    consumer: str
    block_ms: int
    reclaim_interval_s: float
    grace_s: float


class PartitionLoop:
    """Runs one function's handler on one partition's stream until told to stop."""

    def __init__(
        self,
        client: Redis,
        fn: Function[Any],
        partition: int,
        config: LoopConfig,
        health: RedisHealth,
        gate: Gate,
    ) -> None:
        self.client = client
        self.gate = gate
        self.fn = fn
        self.keys = PartitionKeys(fn.name, partition)
        self.config = config
        self.health = health
        opts = fn.options
        # Room for `concurrency` calls running, a batch settling and the next one
        # being read, so reads and settles overlap instead of taking turns.
        per_call = opts.batch_size if fn.batched else 1
        self.capacity = 2 * opts.batch_size + opts.concurrency * per_call
        self.retention_ms = int(opts.retention_s * 1000)
        # A call that waited this long for a lane may have been taken over meanwhile.
        self.late_ms = int(opts.visibility_timeout_s * 500)
        self.dead_retention_ms = int(opts.dead_retention_s * 1000)
        # Declared with a rate; otherwise limited while overrides exist.
        self.declared_limited = limited(fn)
        self.limited = self.declared_limited
        self.recorder = Recorder()
        # Rate-limit checks and backlog refills in flight, each for one read.
        self.limiting: set[asyncio.Task[None]] = set()
        # Calls of jobs waiting for the rate-limit slot reserved for them, and
        # until when (loop time) the reader waits, the global limit being booked
        # beyond its horizon (runtime.worker.limiter).
        self.slotted: dict[int, asyncio.TimerHandle] = {}
        self.read_after = 0.0
        self.refilling: set[asyncio.Task[None]] = set()
        # Entries read and not yet settled: what heartbeats extend and shutdown hands back.
        self.held: dict[str, str] = {}
        # Entries taken over from lost workers: their marks go once they settle.
        self.suspects: set[str] = set()
        # Calls waiting for a lane. A deque and one event rather than an
        # asyncio.Queue: the queue's put and get were a fifth of the worker's time
        # per job with a single-job no-op handler (bench profile).
        self.calls: collections.deque[Call] = collections.deque()
        self.calls_ready = asyncio.Event()
        self.lanes_done = False
        self.outbox: list[Outcome] = []
        self.outbox_ready = asyncio.Event()
        self.room = asyncio.Event()
        # Clear while the function is paused: the reader waits on it.
        self.unpaused = asyncio.Event()
        self.unpaused.set()
        self.stopping = False
        self.closing = False
        # Calls running in lanes now: while any run, the settler waits a few loop
        # turns for their outcomes to share its round trip.
        self.busy = 0
        self.lanes: list[Lane] = []

    def running(self) -> list[str]:
        """The calls in the lanes now, for a report of a blocked loop (runtime.worker.stall)."""
        return [
            f"{self.fn.name} job {', '.join(e.id for e in lane.call.envelopes)}"
            for lane in self.lanes
            if isinstance(lane.call, Call)
        ]

    async def run(self, stop: asyncio.Event) -> None:
        if not await self._join(stop):
            return
        self.lanes = lanes = [Lane() for _ in range(self.fn.options.concurrency)]
        for lane in lanes:
            lane.task = asyncio.create_task(self._lane(lane))
        watchdog = asyncio.create_task(expire_forever(lanes, self.fn.options.timeout_s))
        settler = asyncio.create_task(self._settle_forever())
        heartbeat = asyncio.create_task(
            heartbeat_forever(
                self.client,
                self.keys,
                self.config.consumer,
                self.held,
                self.health,
                self.fn.options.visibility_timeout_s,
            )
        )
        reclaimer = asyncio.create_task(
            reclaim_forever(
                self.client,
                self.keys,
                self.config.consumer,
                self.health,
                min_idle_ms=int(self.fn.options.visibility_timeout_s * 1000),
                interval_s=self.config.reclaim_interval_s,
                batch_size=self.fn.options.batch_size,
                # Past the reader's room: a busy worker never has room for long,
                # and a lost worker's jobs must not wait for its backlog. One
                # worker's worth on top bounds what a pass takes over.
                room=lambda: 2 * self.capacity - len(self.held),
                accept=self._accept,
            )
        )
        reader = asyncio.create_task(self._read_forever())
        pause = asyncio.create_task(self._watch_pause())
        metrics = asyncio.create_task(
            flush_forever(self.client, self.keys, self.recorder, self.health)
        )
        await stop.wait()
        await stop_task(pause)
        await self._shut_down(
            [lane.task for lane in lanes], settler, heartbeat, reclaimer, reader, metrics
        )
        await stop_task(watchdog)

    async def _join(self, stop: asyncio.Event) -> bool:
        backoff = Backoff()
        while not stop.is_set():
            try:
                await ensure_group(self.client, self.keys)
            except RedisUnavailable as exc:
                self.health.down(exc)
                await sleep_unless(stop, backoff.next_delay())
                continue
            self.health.up()
            return await self._watch_limits(stop)
        return False

    async def _watch_limits(self, stop: asyncio.Event) -> bool:
        """Learn whether overrides exist before the first read, so jobs published
        under an override never start unchecked."""
        if self.declared_limited:
            return True
        backoff = Backoff()
        while not stop.is_set():
            try:
                self.limited = await overridden(self.client, self.keys)
            except RedisUnavailable as exc:
                self.health.down(exc)
                await sleep_unless(stop, backoff.next_delay())
                continue
            return True
        return False

    async def _shut_down(
        self,
        lanes: list[asyncio.Task[None]],
        settler: asyncio.Task[None],
        heartbeat: asyncio.Task[None],
        reclaimer: asyncio.Task[None],
        reader: asyncio.Task[None],
        metrics: asyncio.Task[None],
    ) -> None:
        """Stop reading, let running calls finish within the grace period, settle, hand back.

        The order matters: reading stops first so no new work starts; heartbeats
        run until the end so a slow finisher keeps its claims; what never started
        or did not finish in time is handed back without charging an attempt.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.grace_s
        self.stopping = True
        self.room.set()
        self.unpaused.set()
        await stop_task(reclaimer)
        # A read in progress returns within BLOCK (and a batching window); what it
        # brings is held, not run.
        await stop_task(reader, (self.config.block_ms + self.fn.options.batch_window_ms) / 1000 + 1)
        await asyncio.gather(*(stop_task(task, 1.0) for task in [*self.limiting, *self.refilling]))
        # Jobs waiting for their slot are handed back with the rest.
        for handle in self.slotted.values():
            handle.cancel()
        self.slotted.clear()
        self.calls.clear()
        self.lanes_done = True
        self.calls_ready.set()
        _, late = await asyncio.wait(lanes, timeout=max(0.0, deadline - loop.time()))
        await asyncio.gather(*(stop_task(task) for task in late))
        self.closing = True
        self.outbox_ready.set()
        await stop_task(settler, max(1.0, deadline - loop.time()))
        await stop_task(heartbeat)
        await stop_task(metrics)
        try:
            await flush_once(self.client, self.keys, self.recorder)
        except RedisUnavailable:
            log.warning("%s: last metrics not written: Redis is unavailable", self.keys)
        held = [Held(eid, job_id) for eid, job_id in self.held.items()]
        try:
            left = await leave(self.client, self.keys, self.config.consumer, held)
        except RedisUnavailable as exc:
            if held:
                log.warning(
                    "%s: could not hand back %d jobs (%s); they are reclaimed after %g s",
                    self.keys,
                    len(held),
                    exc,
                    self.fn.options.visibility_timeout_s,
                )
            return
        if left.handed_back:
            log.info("%s: handed back %d unfinished jobs", self.keys, left.handed_back)

    async def _read_forever(self) -> None:
        backoff = Backoff()
        batch_size = self.fn.options.batch_size
        while not self.stopping:
            if not self.unpaused.is_set():
                await self.unpaused.wait()
                continue
            free = self.capacity - len(self.held)
            if free <= 0:
                self.room.clear()
                await self.room.wait()
                continue
            if (wait_s := self.read_after - asyncio.get_running_loop().time()) > 0:
                # Read nothing only to defer it: wait for the limit (or shutdown).
                self.room.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self.room.wait()
                continue
            try:
                deliveries, last = await self._read_batch(min(free, batch_size))
            except RedisUnavailable as exc:
                self.health.down(exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            except Exception:
                log.exception("%s: read failed", self.keys)
                await asyncio.sleep(backoff.next_delay())
                continue
            self.health.up()
            backoff.reset()
            if not deliveries:
                self._refill(last)
                continue
            intake = take_in(self.fn, deliveries, self.held, env.now_ms())
            # Held before the limits are asked: a heartbeat keeps them meanwhile.
            self.held.update(intake.taken)
            if self.limited and intake.calls:
                # Asked, with the last read's refill, while the next read goes on:
                # the limits cost a round trip, not a stall of the reader.
                task = asyncio.create_task(self._limit_then_queue(intake, last))
                self.limiting.add(task)
                task.add_done_callback(self.limiting.discard)
            else:
                self._refill(last)
                self._queue(intake)

    async def _watch_pause(self) -> None:
        while True:
            try:
                paused = await is_paused(self.client, self.keys)
                if not self.declared_limited:
                    self.limited = await overridden(self.client, self.keys)
            except Exception as exc:
                # As it was: the reader reports an outage; anything else is a bug.
                if not isinstance(exc, RedisUnavailable):
                    log.exception("%s: pause flag unreadable", self.keys)
                paused = not self.unpaused.is_set()
            if paused and self.unpaused.is_set():
                log.info("%s: paused", self.keys)
                self.unpaused.clear()
            elif not paused and not self.unpaused.is_set():
                log.info("%s: resumed", self.keys)
                self.unpaused.set()
            await asyncio.sleep(PAUSE_CHECK_S)

    async def _read_batch(self, want: int) -> tuple[list[Delivery], Read]:
        """Block for jobs; with a batching window, keep reading until `want` are in
        or the window since the first one has passed. Every read but the last is
        refilled here; the last one's refill is returned, for the caller to make
        (with the rate limits, in one call)."""
        deliveries = await read(
            self.client, self.keys, self.config.consumer, want, self.config.block_ms
        )
        last = Read(taken(deliveries), len(deliveries) < want)
        window_s = self.fn.options.batch_window_ms / 1000
        if not window_s or not deliveries or len(deliveries) >= want:
            return deliveries, last
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window_s
        while (
            len(deliveries) < want and not self.stopping and (left_s := deadline - loop.time()) > 0
        ):
            try:
                more = await read(
                    self.client,
                    self.keys,
                    self.config.consumer,
                    want - len(deliveries),
                    max(1, round(left_s * 1000)),
                )
            except RedisUnavailable:
                break  # run what is in; the next read reports the outage
            self._refill(last)
            last = Read(taken(more), len(more) < want - len(deliveries))
            if not more:
                break
            deliveries += more
        return deliveries, last

    def _refill(self, read: Read) -> None:
        """Let the backlogs of the workspaces read into the stream, beside the next
        read rather than before it; a read that found too few also heals the counts."""
        task = asyncio.create_task(self._refill_once(read))
        self.refilling.add(task)
        task.add_done_callback(self.refilling.discard)

    async def _refill_once(self, read: Read) -> None:
        try:
            await refill(self.client, self.keys, read.taken, read.drained, self.fn.options.share)
        except RedisUnavailable as exc:
            # Counts left high are healed by a later read that finds the stream drained.
            self.health.down(exc)
        except Exception:
            log.exception("%s: refill failed", self.keys)

    async def _limit_then_queue(self, intake: Intake, read: Read, *, first: bool = False) -> None:
        limited = await apply_limits(self.client, self.keys, self.fn, intake, read)
        self._queue(limited.intake, first=first)
        loop = asyncio.get_running_loop()
        for wait_ms, call in limited.later:
            # Held (heartbeats keep it) until its reserved slot comes.
            self.slotted[id(call)] = loop.call_later(wait_ms / 1000, self._release, call)
        if limited.pause_ms:
            self.read_after = max(self.read_after, loop.time() + limited.pause_ms / 1000)

    def _release(self, call: Call) -> None:
        """A held job's reserved slot has come: queue its call."""
        del self.slotted[id(call)]
        if not self.stopping:
            self.calls.append(call)
            self.calls_ready.set()

    def _accept(self, deliveries: list[Delivery]) -> None:
        """Hold what the reclaimer took over and queue it ahead of what was read.

        Under the rate limits too: a lost worker may have held many jobs waiting
        for their slots, and run at once they would break the limit (their slots
        go unused: a crash costs that much of the rate)."""
        intake = take_in(self.fn, deliveries, self.held, env.now_ms())
        self.held.update(intake.taken)
        self.suspects.update(eid for eid, _ in intake.taken)
        if self.limited and intake.calls:
            task = asyncio.create_task(
                self._limit_then_queue(intake, Read({}, drained=False), first=True)
            )
            self.limiting.add(task)
            task.add_done_callback(self.limiting.discard)
        else:
            self._queue(intake, first=True)

    def _queue(self, intake: Intake, *, first: bool = False) -> None:
        """Queue handler calls (`first`: ahead of the others) unless shutting down;
        settle the rest at once."""
        if intake.outcomes:
            self.outbox += intake.outcomes
            self.outbox_ready.set()
        if self.stopping:
            return
        if first:
            self.calls.extendleft(reversed(intake.calls))
        else:
            self.calls.extend(intake.calls)
        self.calls_ready.set()

    async def _lane(self, lane: Lane) -> None:
        calls = self.calls
        outbox = self.outbox_ready
        clock = asyncio.get_running_loop().time
        while True:
            if not calls:
                if self.lanes_done:
                    return
                self.calls_ready.clear()
                await self.calls_ready.wait()
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
            logs.job.set(
                (self.fn.name, batch.workspace, "" if len(batch) > 1 else batch.jobs[0].id)
            )
            self.busy += 1
            lane.call, lane.started = call, clock()
            if instruments.enabled():
                instruments.started(self.fn.name, call.envelopes, env.now_ms())
            try:
                if tracing.enabled():
                    failures = await self._invoke_traced(call)
                else:
                    failures = await invoke(self.fn, call.batch)
            except asyncio.CancelledError:
                if lane.expired is not call:
                    raise  # shutdown past the grace period: the job is handed back
                _uncancel(lane.task)
                failures = timed_out(self.fn, call.batch)
            else:
                if lane.expired is call:
                    _uncancel(lane.task)  # the handler swallowed our cancels: its result stands
            finally:
                lane.call = None
                self.busy -= 1
                gate.leave(call.alone)
            took = clock() - lane.started
            self.recorder.call(call.batch.workspace, took)
            if instruments.enabled():
                instruments.called(self.fn.name, took)
            append = self.outbox.append
            results = call.batch.results
            for entry_id, envelope in zip(call.entry_ids, call.envelopes, strict=True):
                failure = failures.get(envelope.id) if failures else None
                if failure is None:
                    append(completed(entry_id, envelope, results.get(envelope.id)))
                else:
                    append(failed(self.fn, entry_id, envelope, failure))
            outbox.set()

    async def _still_held(self, call: Call) -> Call | None:
        """The part of a late call that is still this worker's, claims renewed.

        A worker that froze (a stopped process, a long GC pause, a blocked loop)
        past the visibility timeout finds its queued jobs taken over, and maybe
        finished, by another: settling them would be fenced, but running them
        again is the harm. What Redis cannot confirm (it is away) runs.
        """
        try:
            extension = await extend(self.client, self.keys, self.config.consumer, call.entry_ids)
        except RedisUnavailable:
            return call
        gone = {*extension.lost, *extension.gone}
        if not gone:
            return call
        for eid in gone:
            self.held.pop(eid, None)
        self.room.set()
        log.warning("%s: %d late jobs not run: another worker took them over", self.keys, len(gone))
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
        backoff = Backoff()
        while True:
            try:
                await mark_started(self.client, self.keys, call.entry_ids)
                return
            except RedisUnavailable as exc:
                self.health.down(exc)
            except Exception:
                log.exception("%s: marking a suspect job failed", self.keys)
            await asyncio.sleep(backoff.next_delay())

    async def _forget_suspects(self, batch: list[Outcome], fenced: set[str]) -> None:
        """Drop the marks of suspects settled here (those fenced are another's now)."""
        gone = [s.entry_id for s in batch if s.entry_id in self.suspects]
        if not gone:
            return
        self.suspects.difference_update(gone)
        # Left behind when Redis is away: the marks expire with their key.
        with contextlib.suppress(RedisUnavailable):
            await forget(self.client, self.keys, [eid for eid in gone if eid not in fenced])

    async def _invoke_traced(self, call: Call) -> dict[str, Failure]:
        """`invoke` inside the call's spans (runtime.telemetry.tracing); apart, so that with
        tracing off a call pays for no context manager."""
        with tracing.processing(self.fn.name, call.envelopes, self.fn.batched) as spans:
            failures = await invoke(self.fn, call.batch)
            for job_id, why in failures.items():
                tracing.failed(spans[job_id], why.error)
            return failures

    async def _settle_forever(self) -> None:
        backoff = Backoff()
        while True:
            await self.outbox_ready.wait()
            await self._gather()
            self.outbox_ready.clear()
            if not self.outbox:
                if self.closing:
                    return
                continue
            batch, self.outbox = self.outbox, []
            try:
                result = await settle(
                    self.client,
                    self.keys,
                    self.config.consumer,
                    self.retention_ms,
                    batch,
                    len(self.held),
                    self.fn.options.retention_count,
                    dead_retention_ms=self.dead_retention_ms,
                    dead_retention_count=self.fn.options.dead_retention_count,
                )
            except RedisUnavailable as exc:
                # Keep every outcome: nothing finished is forgotten while Redis is away.
                self.outbox[:0] = batch
                self.outbox_ready.set()
                self.health.down(exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            except Exception:
                self.outbox[:0] = batch
                self.outbox_ready.set()
                log.exception("%s: settle failed", self.keys)
                await asyncio.sleep(backoff.next_delay())
                continue
            self.health.up()
            backoff.reset()
            held = self.held
            for s in batch:
                held.pop(s.entry_id, None)
            fenced = set(result.fenced)
            if self.suspects:
                await self._forget_suspects(batch, fenced)
            self.recorder.settled(batch, fenced)
            if instruments.enabled():
                instruments.settled(self.fn.name, batch, fenced)
            if result.fenced:
                log.warning(
                    "%s: %d results not settled: another worker reclaimed those jobs",
                    self.keys,
                    len(result.fenced),
                )
            self.room.set()

    async def _gather(self) -> None:
        """Under load, let a batch of outcomes build up; when idle, settle at once.

        Each turn lets every ready lane finish its call. With nothing queued or
        running, no outcome is coming, so a lone job pays no extra latency.
        """
        batch_size = self.fn.options.batch_size
        for _ in range(GATHER_TURNS):
            if len(self.outbox) >= batch_size or (self.busy == 0 and not self.calls):
                return
            await asyncio.sleep(0)


def _uncancel(task: asyncio.Task[None]) -> None:
    """Clear every cancel the watchdog sent this call: it may have sent several, when
    the first was swallowed (see runtime.worker.watchdog)."""
    while task.cancelling():
        task.uncancel()
