"""The fault battery's handlers: each call appends one line to its process's ledger.

Worker subprocesses load `FUNCTIONS` (tests.chaos.battery_functions:FUNCTIONS) and
write to `$BATTERY_LEDGER/<pid>.log`, opened O_APPEND and written with one
os.write per line: a SIGKILL loses at most the line of a call that had not
ended, never half a line, and no two processes share a file.

The line is the job's effect: `ok` means the work was done (a second `ok` line
for one job is a duplicate effect). Its fields are tests.chaos.ledger.Call's.

Switches break a promise on purpose, for the battery's negative controls:
- `BATTERY_ACK_FIRST=1`: chaos-single's handler returns before its work is done,
  which runs on in the background (acknowledged before the work: a killed
  worker loses it);
- `Work.tail_ms`: the effect first, then more work (a shutdown that cuts the
  tail hands the job back, and its effect happens twice);
- `BATTERY_RAISE_BATCH=1`: the batch handler rejects its whole batch for its
  poison job instead of failing that job alone (its neighbours die with it);
- `BATTERY_ONE_DELIVERY=1`: `max_deliveries=1`, so the first crash dead-letters
  every job running in the process, before isolation can name the poison;
- `BATTERY_NO_FENCE=1`: the worker runs a late call whole, without asking Redis
  which of its jobs are still its own (a zombie runs jobs finished elsewhere);
- `BATTERY_DEAD_READ=1`: an entry that does not decode dead-letters every job
  read with it (a naive worker's answer to garbage in its stream);
- `BATTERY_TICK_UNFENCED=1` (a scheduler): a repeat schedule's tick gets an id of
  this process's own, so the id check no longer makes the copies of several
  schedulers one job (each due time fires once per scheduler);
- `BATTERY_TICK_OWN_CLOCK=1` (a scheduler): a tick is handed to Redis due when
  it is by this process's clock (its due time less the clock's skew), not by
  Redis's (a skewed scheduler fires it early or late by the skew).

Not controls: `BATTERY_RETENTION` and `BATTERY_DEAD_RETENTION` (records of
finished jobs, and dead letters, kept per partition) for the soak;
`BATTERY_SKEW_S` (seconds, may be negative) sets this process's wall clock
(time.time, time.time_ns) that far off, for the clock-skew scenario. The ledger
keeps the true time, so that the lines of all processes compare.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Container
from typing import Literal

import msgspec

from sluice.runtime import Batch, Job, Reject, batch_function, function
from sluice.runtime.declare import Function
from sluice.runtime.scheduler import ticks
from sluice.runtime.worker import intake, lanes, reader
from sluice.streams import envelope as env
from sluice.streams.consume import Delivery
from sluice.streams.publish import Outgoing
from sluice.streams.repeats import Schedule

# The host's true clock, taken before BATTERY_SKEW_S moves the process's.
_true_ns = time.time_ns


class Work(msgspec.Struct, frozen=True):
    n: int
    sleep_ms: int = 0
    # ok: do the work; raise: fail every attempt; exit: end the worker process
    # (os._exit) in the call, as a crashing C extension or an OOM kill would.
    mode: Literal["ok", "raise", "exit"] = "ok"
    # Control: the effect at the start of the call, then this much more work.
    tail_ms: int = 0


class _Ledger:
    """This process's append-only ledger file, opened on first use (after fork)."""

    def __init__(self) -> None:
        self.fd = -1
        self.pid = 0

    def write(self, job: Job[Work], start_ns: int, outcome: str) -> None:
        folder = os.environ.get("BATTERY_LEDGER")
        if not folder:
            return
        if self.pid != os.getpid():
            self.pid = os.getpid()
            path = os.path.join(folder, f"{self.pid}.log")
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = (
            f"{job.id} {job.attempt} {job.deliveries} {self.pid} "
            f"{start_ns} {_true_ns()} {outcome}\n"
        )
        os.write(self.fd, line.encode())


ledger = _Ledger()
# The control's work still running after its handler returned: kept referenced
# so the event loop does not drop the tasks.
_background: set[asyncio.Task[None]] = set()


async def _work(job: Job[Work], start_ns: int, extra_ms: int = 0) -> None:
    work = job.data
    if work.mode == "exit":
        ledger.write(job, start_ns, "exit")
        os._exit(3)
    if work.mode == "raise":
        ledger.write(job, start_ns, "raise")
        raise ValueError(f"work {work.n} refused")
    if work.tail_ms:
        ledger.write(job, start_ns, "ok")
        await asyncio.sleep(work.tail_ms / 1000)  # the tail a shutdown may cut
        return
    if work.sleep_ms or extra_ms:
        await asyncio.sleep((work.sleep_ms + extra_ms) / 1000)  # the job's simulated work
    ledger.write(job, start_ns, "ok")


async def _run(job: Job[Work]) -> None:
    start_ns = _true_ns()
    if os.environ.get("BATTERY_ACK_FIRST") == "1":
        # Half a second more of work than asked: a kill always finds some running.
        task = asyncio.create_task(_work(job, start_ns, extra_ms=500))
        _background.add(task)
        task.add_done_callback(_background.discard)
        return
    await _work(job, start_ns)


async def _run_batch(batch: Batch[Work]) -> None:
    start_ns = _true_ns()
    for job in batch.jobs:
        if job.data.mode == "exit":
            # Before any effect: the crash takes the batch's calls, not their work.
            ledger.write(job, start_ns, "exit")
            os._exit(3)
    poison = [job for job in batch.jobs if job.data.mode == "raise"]
    if poison and os.environ.get("BATTERY_RAISE_BATCH") == "1":
        for job in batch.jobs:
            ledger.write(job, start_ns, "raise")
        raise Reject(f"work {poison[0].data.n} refused")
    tail_ms = max(job.data.tail_ms for job in batch.jobs)
    if not tail_ms:
        # The batch's simulated work, as long as its longest job asked for.
        await asyncio.sleep(max(job.data.sleep_ms for job in batch.jobs) / 1000)
    for job in batch.jobs:
        if job.data.mode == "raise":
            ledger.write(job, start_ns, "raise")
            batch.fail(job, f"work {job.data.n} refused")
        else:
            ledger.write(job, start_ns, "ok")
    if tail_ms:
        await asyncio.sleep(tail_ms / 1000)  # the control's tail, which a shutdown may cut


def _skew_clock(skew_s: float) -> None:
    """Move this process's wall clock by `skew_s`: what the runtime reads as now
    (streams.envelope.now_ms, time.time) is off, as on a host whose NTP failed."""
    skew_ns = round(skew_s * 1e9)
    setattr(time, "time_ns", lambda: _true_ns() + skew_ns)  # noqa: B010 - a module's function
    setattr(time, "time", lambda: (_true_ns() + skew_ns) / 1e9)  # noqa: B010
    # For the test: this process's clock, as the runtime now reads it.
    print(f"battery clock skewed: now_ms={env.now_ms()}", file=sys.stderr, flush=True)


async def _run_unfenced(self: lanes.Lanes, call: intake.Call) -> intake.Call | None:
    """The zombie control's late-call check: none, the whole call runs."""
    return call


def _take_in_all_or_nothing(
    fn: Function[Work], deliveries: list[Delivery], held: Container[str], now_ms: int
) -> intake.Intake:
    """The undecodable-entry control's intake: garbage in a read takes the read."""
    taken = _take_in(fn, deliveries, held, now_ms)
    new = [d for d in deliveries if d.entry_id not in held]
    decoded = []
    for d in new:
        try:
            decoded.append((d, env.decode(d.envelope)))
        except msgspec.DecodeError:
            continue
    if len(decoded) == len(new):
        return taken
    doomed = [intake._dead(fn, d, e, "read with an undecodable entry") for d, e in decoded]
    ids = {o.entry_id for o in doomed}
    garbage = [o for o in taken.outcomes if o.entry_id not in ids]
    return msgspec.structs.replace(taken, ready=[], outcomes=garbage + doomed)


def _tick_of_process(schedule: Schedule, function: str, tick_ms: int, now_ms: int) -> Outgoing:
    """The unfenced control's tick: an id of this scheduler process's own."""
    tick = _tick(schedule, function, tick_ms, now_ms)
    own = tick.envelope.id.replace("rpt:", f"rpt-{os.getpid()}:", 1)
    return msgspec.structs.replace(tick, envelope=msgspec.structs.replace(tick.envelope, id=own))


def _tick_by_own_clock(schedule: Schedule, function: str, tick_ms: int, now_ms: int) -> Outgoing:
    """The own-clock control's tick: due by this process's clock, as if its due time
    were turned into a delay from this clock's now and Redis added it to its own."""
    tick = _tick(schedule, function, tick_ms, now_ms)
    skew_ms = (time.time_ns() - _true_ns()) // 1_000_000
    return msgspec.structs.replace(tick, due_ms=tick.due_ms - skew_ms)


_take_in = intake.take_in
_tick = ticks._tick
if os.environ.get("BATTERY_SKEW_S"):
    _skew_clock(float(os.environ["BATTERY_SKEW_S"]))
if os.environ.get("BATTERY_NO_FENCE") == "1":
    setattr(lanes.Lanes, "_still_held", _run_unfenced)  # noqa: B010
if os.environ.get("BATTERY_DEAD_READ") == "1":
    setattr(reader, "take_in", _take_in_all_or_nothing)  # noqa: B010
if os.environ.get("BATTERY_TICK_UNFENCED") == "1":
    setattr(ticks, "_tick", _tick_of_process)  # noqa: B010
if os.environ.get("BATTERY_TICK_OWN_CLOCK") == "1":
    setattr(ticks, "_tick", _tick_by_own_clock)  # noqa: B010

# The control of the exit-poison scenario: the first crash recorded is final for
# every job taken over that was running then. Read at import, as a deployment's
# own declarations would be.
MAX_DELIVERIES = 1 if os.environ.get("BATTERY_ONE_DELIVERY") == "1" else 3
# Records of finished jobs and dead letters kept per partition: the soak keeps
# few, so that its memory reaches its steady state within the run. By default,
# the declarations' own defaults (100,000 and 10,000).
RETENTION = int(os.environ.get("BATTERY_RETENTION", "100000"))
DEAD_RETENTION = int(os.environ.get("BATTERY_DEAD_RETENTION", str(min(RETENTION, 10_000))))

# Saturated in the battery: 4 lanes of up to 10 jobs, a 1 s visibility timeout,
# so a killed worker's jobs are taken over within the bounded run.
run_single = function(
    "chaos-single",
    input=Work,
    batch_size=10,
    concurrency=4,
    attempts=2,
    backoff_base_s=0.05,
    backoff_cap_s=0.1,
    timeout_s=5.0,
    visibility_timeout_s=1.0,
    max_deliveries=MAX_DELIVERIES,
    retention_count=RETENTION,
    dead_retention_count=DEAD_RETENTION,
)(_run)
run_batch = batch_function(
    "chaos-batch",
    input=Work,
    batch_size=20,
    concurrency=2,
    attempts=2,
    backoff_base_s=0.05,
    backoff_cap_s=0.1,
    timeout_s=5.0,
    visibility_timeout_s=1.0,
    max_deliveries=MAX_DELIVERIES,
    retention_count=RETENTION,
    dead_retention_count=DEAD_RETENTION,
)(_run_batch)

FUNCTIONS = (run_single, run_batch)
