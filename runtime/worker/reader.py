"""The reader of a partition loop: reads jobs while there is room, takes them in,
applies the rate limits, and hands ready calls to the lanes and outcomes decided
without a call (dead, expired, deferred) to the settler.

After each read a refill call lets the workspaces' backlogs into the stream (for
a limited function, in the same call that takes rate capacity). A job over a
limit waits here for the slot reserved for it; while the function's global limit
is booked beyond its horizon, and while the function is paused, the reader waits.

A pause holds from the moment its call returns: each read asks for the pause
flag in its round trip (streams.consume.read_unless_paused), and what a read
brings with the flag set is held, not started, as are the calls queued in the
lanes once the reader knows. So the jobs that may start after a pause returned
are at most those read before it: the reader's capacity (below), per worker and
partition. The flag is also looked at every PAUSE_CHECK_S, which is how a
paused reader learns of the resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from sluice.runtime.guard import Guard
from sluice.runtime.lifecycle import stop_task
from sluice.runtime.worker.intake import Call, Intake, Ready, calls, take_in
from sluice.runtime.worker.lanes import Lanes
from sluice.runtime.worker.limiter import apply_limits, limited
from sluice.runtime.worker.partition import Partition
from sluice.runtime.worker.settler import Settler
from sluice.streams import envelope as env
from sluice.streams.consume import Delivery, Read, ensure_group, read_unless_paused, refill, taken
from sluice.streams.errors import RedisUnavailable
from sluice.streams.pause import is_paused
from sluice.streams.ratelimit import overridden
from sluice.streams.settle import Outcome

log = logging.getLogger(__name__)

# How often a worker looks whether its function was paused or resumed
# (runtime.client.pauses) without reading, and whether one declared without a rate
# has run-time limits (runtime.client.limits).
PAUSE_CHECK_S = 1.0


class Reader:
    """Feeds the lanes and the settler of one partition until stopped."""

    def __init__(self, part: Partition, block_ms: int, lanes: Lanes, settler: Settler) -> None:
        self.part = part
        self.fn = part.fn
        self.block_ms = block_ms
        self.lanes = lanes
        self.settler = settler
        opts = part.fn.options
        # Room for `concurrency` calls running, a batch settling and the next one
        # being read, so reads and settles overlap instead of taking turns.
        per_call = opts.batch_size if part.fn.batched else 1
        self.capacity = 2 * opts.batch_size + opts.concurrency * per_call
        # Declared with a rate; otherwise limited while overrides exist.
        self.declared_limited = limited(part.fn)
        self.limited = self.declared_limited
        # Rate-limit checks and backlog refills in flight, each for one read.
        self.limiting: set[asyncio.Task[None]] = set()
        self.refilling: set[asyncio.Task[None]] = set()
        # Calls of jobs waiting for the rate-limit slot reserved for them, and
        # until when (loop time) the reader waits, the global limit being booked
        # beyond its horizon (runtime.worker.limiter).
        self.slotted: dict[int, asyncio.TimerHandle] = {}
        self.read_after = 0.0
        # Clear while the function is paused: the reader waits on it.
        self.unpaused = asyncio.Event()
        self.unpaused.set()
        self.stopping = False

    async def join(self, stop: asyncio.Event) -> bool:
        """Create the consumer group, and learn whether the function is paused or
        limited by overrides, before the first read: jobs published under an
        override never start unchecked. False if `stop` came first."""
        guard = Guard(self.part.health, f"{self.part.keys}: joining")
        if not await guard.until_done(lambda: ensure_group(self.part.client, self.part.keys), stop):
            return False
        return await guard.until_done(self.watch, stop)

    async def watch(self) -> None:
        """Look at the pause flag and, for a function declared without a rate, at
        whether limits were set at run time."""
        part = self.part
        paused = await is_paused(part.client, part.keys)
        if not self.declared_limited:
            self.limited = await overridden(part.client, part.keys)
        self._paused(paused)

    def _paused(self, paused: bool) -> None:
        """Take in what the flag says: paused, the lanes start nothing and the reader
        waits; resumed, both go on with what is held."""
        part = self.part
        if paused and not part.paused:
            log.info("%s: paused", part.keys)
            part.paused = True
            self.unpaused.clear()
        elif not paused and part.paused:
            log.info("%s: resumed", part.keys)
            part.paused = False
            self.unpaused.set()
            self.lanes.ready.set()

    def stop(self) -> None:
        """Read no more, and queue no more calls; a read in progress ends within BLOCK."""
        self.stopping = True
        self.part.room.set()
        self.unpaused.set()

    async def drain(self) -> None:
        """After the reader's task: end the limit checks and refills it started, and
        drop the jobs waiting for their slot (handed back with the rest)."""
        await asyncio.gather(*(stop_task(task, 1.0) for task in [*self.limiting, *self.refilling]))
        for handle in self.slotted.values():
            handle.cancel()
        self.slotted.clear()

    async def run(self) -> None:
        part = self.part
        held = part.held
        room = part.room
        guard = Guard(part.health, f"{part.keys}: read")
        batch_size = self.fn.options.batch_size
        while not self.stopping:
            if not self.unpaused.is_set():
                await self.unpaused.wait()
                continue
            free = self.capacity - len(held)
            if free <= 0:
                room.clear()
                await room.wait()
                continue
            if (wait_s := self.read_after - asyncio.get_running_loop().time()) > 0:
                # Read nothing only to defer it: wait for the limit (or shutdown).
                room.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await room.wait()
                continue
            try:
                deliveries, last = await self._read_batch(min(free, batch_size))
            except Exception as exc:
                await guard.pause(exc)
                continue
            guard.ok()
            part.health.did("read")
            if not deliveries:
                self._refill(last)
                continue
            intake = take_in(self.fn, deliveries, held, env.now_ms())
            # Held before the limits are asked: a heartbeat keeps them meanwhile.
            held.update(intake.taken)
            if self.limited and intake.ready:
                # Asked, with the last read's refill, while the next read goes on:
                # the limits cost a round trip, not a stall of the reader.
                self._spawn(self.limiting, self._limit_then_queue(intake, last))
            else:
                self._refill(last)
                self._queue(intake.outcomes, intake.ready, intake.read_ms)

    def accept(self, deliveries: list[Delivery]) -> None:
        """Hold what the reclaimer took over and queue it ahead of what was read.

        Under the rate limits too: a lost worker may have held many jobs waiting
        for their slots, and run at once they would break the limit (their slots
        go unused: a crash costs that much of the rate)."""
        part = self.part
        intake = take_in(self.fn, deliveries, part.held, env.now_ms())
        part.held.update(intake.taken)
        part.suspects.update(eid for eid, _ in intake.taken)
        if self.limited and intake.ready:
            read_nothing = Read({}, drained=False)
            self._spawn(self.limiting, self._limit_then_queue(intake, read_nothing, first=True))
        else:
            self._queue(intake.outcomes, intake.ready, intake.read_ms, first=True)

    async def _read_batch(self, want: int) -> tuple[list[Delivery], Read]:
        """Block for jobs; with a batching window, keep reading until `want` are in
        or the window since the first one has passed. Every read but the last is
        refilled here; the last one's refill is returned, for the caller to make
        (with the rate limits, in one call)."""
        part = self.part
        deliveries, paused = await read_unless_paused(
            part.client, part.keys, part.consumer, want, self.block_ms
        )
        # Before they are queued: the lanes must not start what came after a pause.
        self._paused(paused)
        last = Read(taken(deliveries), len(deliveries) < want)
        window_s = self.fn.options.batch_window_ms / 1000
        if not window_s or not deliveries or len(deliveries) >= want or paused:
            return deliveries, last
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window_s
        while (
            len(deliveries) < want and not self.stopping and (left_s := deadline - loop.time()) > 0
        ):
            try:
                more, paused = await read_unless_paused(
                    part.client,
                    part.keys,
                    part.consumer,
                    want - len(deliveries),
                    max(1, round(left_s * 1000)),
                )
            except RedisUnavailable:
                break  # run what is in; the next read reports the outage
            self._paused(paused)
            self._refill(last)
            last = Read(taken(more), len(more) < want - len(deliveries))
            deliveries += more
            if not more or paused:
                break
        return deliveries, last

    def _refill(self, read: Read) -> None:
        """Let the backlogs of the workspaces read into the stream, beside the next
        read rather than before it; a read that found too few also heals the counts."""
        self._spawn(self.refilling, self._refill_once(read))

    async def _refill_once(self, read: Read) -> None:
        part = self.part
        try:
            await refill(part.client, part.keys, read.taken, read.drained, self.fn.options.share)
        except Exception as exc:
            # Counts left high are healed by a later read that finds the stream drained.
            Guard(part.health, f"{part.keys}: refill").report(exc)

    async def _limit_then_queue(self, intake: Intake, read: Read, *, first: bool = False) -> None:
        part = self.part
        limited = await apply_limits(part.client, part.keys, self.fn, intake.ready, read)
        self._queue([*intake.outcomes, *limited.deferred], limited.run, intake.read_ms, first=first)
        loop = asyncio.get_running_loop()
        for wait_ms, ready in limited.later:
            # Held (heartbeats keep it) until its reserved slot comes.
            (call,) = calls(self.fn, [ready], intake.read_ms)
            self.slotted[id(call)] = loop.call_later(wait_ms / 1000, self._release, call)
        if limited.pause_ms:
            self.read_after = max(self.read_after, loop.time() + limited.pause_ms / 1000)

    def _release(self, call: Call) -> None:
        """A held job's reserved slot has come: queue its call."""
        del self.slotted[id(call)]
        if not self.stopping:
            self.lanes.push([call])

    def _queue(
        self, outcomes: list[Outcome], ready: list[Ready], read_ms: int, *, first: bool = False
    ) -> None:
        """Settle `outcomes` at once; queue the calls that run `ready` (`first`: ahead
        of the others) unless stopping."""
        if outcomes:
            self.settler.add(outcomes)
        if not self.stopping:
            self.lanes.push(calls(self.fn, ready, read_ms), first=first)

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
