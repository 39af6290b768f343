"""The fault battery's ledger, in Jepsen's vocabulary, and the checker that reads it.

The test's side is a `History`: every publish is invoked, then ok (Redis
confirmed the write), fail (nothing was written) or unknown (the call raised
RedisUnavailable or timed out: it may have been written or not). Ids are given
by the test, so an unknown publish's jobs can still be recognised if they run.
The workers' side is their `Call`s, one line per handler call in each
process's append-only file (tests.chaos.battery_functions). `check` holds the
two against each other and gives the `Figures`; `violations` says which
promise a run broke, and a negative control asserts that it names one.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from sluice.runtime import Client, Event, RedisUnavailable
from sluice.streams.errors import RedisFull
from sluice.streams.keys import given_id

Outcome = Literal["ok", "fail", "unknown"]


class Op(msgspec.Struct, frozen=True):
    """One publish call and what came of it."""

    ids: tuple[str, ...]
    invoke_ns: int
    complete_ns: int
    outcome: Outcome
    # Each job's delay (ms, by Redis's clock from the publish): due no earlier
    # than invoke_ns plus it. Empty: none was delayed.
    delays_ms: tuple[int, ...] = ()


class Fault(msgspec.Struct, frozen=True):
    """A process the test killed or paused (or saw die), and the jobs held then:
    the only jobs the fault may run twice."""

    pid: int
    at_ns: int
    # Stream entries pending when the workers were frozen for the fault, by job
    # id: a killed worker's own, or all for a fault of Redis. None for a worker
    # that died by itself (a poison job), which could not be looked at first.
    held: frozenset[str] | None = None
    # A process stopped (SIGSTOP) and later resumed, not killed: a zombie, which
    # may end the calls it was running but must start none after `at_ns`.
    frozen: bool = False


class History:
    """The test's record of what it published and what it did to the processes."""

    def __init__(self, client: Client, *, timeouts_fail: bool = False) -> None:
        self.client = client
        # The control of the paused-Redis scenario: a publisher that takes a call
        # that timed out for one that wrote nothing.
        self.timeouts_fail = timeouts_fail
        self.ops: list[Op] = []
        self.faults: list[Fault] = []
        self._next = 0

    def events(self, n: int, **data: object) -> list[Event]:
        """`n` events with ids of their own, never given before in this history, all
        of one workspace: the battery's batches mix every kind of job."""
        first, self._next = self._next, self._next + n
        return [
            Event(workspace="ws", id=f"j{i}", data={"n": i, **data})
            for i in range(first, first + n)
        ]

    async def publish(self, function: str, events: Sequence[Event]) -> Outcome:
        ids = tuple(given_id(e.workspace, e.id or "") for e in events)
        delays = tuple(e.delay_ms or 0 for e in events)
        invoke_ns = time.time_ns()
        outcome: Outcome
        try:
            await self.client.publish_many(function, events)
            outcome = "ok"
        except RedisFull:
            # Refused before anything was written (streams.errors): a definite fail.
            outcome = "fail"
        except (RedisUnavailable, TimeoutError):
            # The write may have reached Redis before the connection failed.
            outcome = "fail" if self.timeouts_fail else "unknown"
        self.ops.append(Op(ids, invoke_ns, time.time_ns(), outcome, delays if any(delays) else ()))
        return outcome

    def ids(self, outcome: Outcome) -> set[str]:
        return {i for op in self.ops if op.outcome == outcome for i in op.ids}


class Call(msgspec.Struct, frozen=True, array_like=True):
    """One handler call, as its ledger line gives it."""

    job: str
    attempt: int
    deliveries: int
    pid: int
    start_ns: int
    end_ns: int
    # ok: the job's effect happened; raise, exit: the call failed or ended its process.
    outcome: str


def read_calls(folder: Path) -> list[Call]:
    """Every complete line of every process's ledger in `folder`."""
    calls = []
    for path in sorted(folder.glob("*.log")):
        for line in path.read_text().splitlines():
            job, attempt, deliveries, pid, start, end, outcome = line.split()
            calls.append(
                Call(job, int(attempt), int(deliveries), int(pid), int(start), int(end), outcome)
            )
    return calls


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """A run's figures: counts of jobs, and delays in ms."""

    scenario: str
    invoked: int
    acknowledged: int
    failed: int
    unknown: int
    # Unknown publishes whose jobs ran anyway.
    recovered: int
    completed: int
    # Acknowledged, neither completed nor dead-lettered.
    lost: int
    # Completed, but never published or published with a definite fail.
    unexpected: int
    duplicates: int
    # Duplicates of jobs held at a fault, or run by a worker that crashed.
    duplicates_held: int
    faults: int
    held: int
    dead: int
    innocent_dead: int
    redelivery_p50_ms: int
    redelivery_max_ms: int
    lateness_p50_ms: int
    lateness_p99_ms: int
    lateness_max_ms: int
    # Jobs whose first call started before they were due (a delayed job run early).
    early: int
    # Calls a frozen process (a zombie) started after it was stopped.
    late_calls: int

    def line(self) -> str:
        return " ".join(f"{f}={getattr(self, f)}" for f in self.__struct_fields__)


def check(
    scenario: str,
    history: History,
    calls: Sequence[Call],
    *,
    dead: Collection[str] = (),
    poison: Collection[str] = (),
) -> Figures:
    """The figures of a finished run: `dead` are the dead-lettered job ids, `poison`
    those published to fail (their dead letters are expected)."""
    acknowledged = history.ids("ok")
    failed = history.ids("fail")
    unknown = history.ids("unknown")
    effects = collections.Counter(c.job for c in calls if c.outcome == "ok")
    completed = set(effects)
    duplicates = {j for j, n in effects.items() if n > 1}
    held = {j for f in history.faults for j in f.held or ()}
    # A process that died unseen: what it ran to completion may not have been settled.
    crashed = {f.pid for f in history.faults if f.held is None}
    on_crashed = {c.job for c in calls if c.pid in crashed and c.outcome == "ok"}
    # From the publish call on (plus the job's delay): Redis made the job due
    # somewhere within that call, by its clock, which is this host's.
    due_ns = {
        i: op.invoke_ns + d * 1_000_000
        for op in history.ops
        if op.outcome == "ok"
        for i, d in zip(op.ids, op.delays_ms or (0,) * len(op.ids), strict=True)
    }
    first_start: dict[str, int] = {}
    for call in calls:
        first_start[call.job] = min(first_start.get(call.job, call.start_ns), call.start_ns)
    lateness = [first_start[j] - due_ns[j] for j in completed & set(due_ns)]
    frozen = {f.pid: f.at_ns for f in history.faults if f.frozen}
    late_calls = [c for c in calls if c.pid in frozen and c.start_ns > frozen[c.pid]]
    redelivery = _redelivery(history.faults, calls)
    return Figures(
        scenario=scenario,
        invoked=sum(len(op.ids) for op in history.ops),
        acknowledged=len(acknowledged),
        failed=len(failed),
        unknown=len(unknown),
        recovered=len(unknown & completed),
        completed=len(completed),
        lost=len(acknowledged - completed - set(dead)),
        unexpected=len(completed - acknowledged - unknown),
        duplicates=len(duplicates),
        duplicates_held=len(duplicates & (held | on_crashed)),
        faults=len(history.faults),
        held=len(held),
        dead=len(set(dead)),
        innocent_dead=len(set(dead) - set(poison)),
        redelivery_p50_ms=_ms(_percentile(redelivery, 0.5)),
        redelivery_max_ms=_ms(_percentile(redelivery, 1.0)),
        lateness_p50_ms=_ms(_percentile(lateness, 0.5)),
        lateness_p99_ms=_ms(_percentile(lateness, 0.99)),
        lateness_max_ms=_ms(_percentile(lateness, 1.0)),
        # Redis's clock is in whole ms: a due time may fall up to 1 ms before invoke_ns.
        early=sum(1 for late in lateness if late < -1_000_000),
        late_calls=len(late_calls),
    )


def _redelivery(faults: Sequence[Fault], calls: Sequence[Call]) -> list[int]:
    """For each job held at a fault: from the fault to its next call."""
    delays = []
    for fault in faults:
        held = fault.held or frozenset()
        starts = collections.defaultdict(list)
        for call in calls:
            if call.job in held and call.pid != fault.pid and call.start_ns > fault.at_ns:
                starts[call.job].append(call.start_ns)
        delays += [min(s) - fault.at_ns for s in starts.values()]
    return delays


def _percentile(values: Sequence[int], q: float) -> int:
    """The nearest-rank percentile: a value that occurred, 0 for none."""
    if not values:
        return 0
    ranked = sorted(values)
    return ranked[max(math.ceil(q * len(ranked)) - 1, 0)]


def _ms(ns: int) -> int:
    return ns // 1_000_000


class Bar(msgspec.Struct, frozen=True):
    """What a scenario promises: nothing lost, nothing unexpected, no innocent job
    dead, no delayed job run early, no call started by a zombie, and duplicates
    none, or only of jobs held at a fault (in flight on a killed worker, or on any
    worker when Redis failed)."""

    duplicates: Literal["none", "held"] = "none"


def violations(figures: Figures, bar: Bar) -> list[str]:
    """The promises `figures` break; empty when the run kept them all."""
    broken = []
    if figures.lost:
        broken.append(f"lost={figures.lost}")
    if figures.unexpected:
        broken.append(f"unexpected={figures.unexpected}")
    if figures.innocent_dead:
        broken.append(f"innocent_dead={figures.innocent_dead}")
    if figures.early:
        broken.append(f"early={figures.early}")
    if figures.late_calls:
        broken.append(f"late_calls={figures.late_calls}")
    if bar.duplicates == "none" and figures.duplicates:
        broken.append(f"duplicates={figures.duplicates}")
    if bar.duplicates == "held" and figures.duplicates > figures.duplicates_held:
        broken.append(f"duplicates={figures.duplicates} > duplicates_held")
    return broken


# A repeat schedule's tick runs as a job whose id is made of the schedule and the
# due time (sluice.runtime.scheduler.ticks): rpt:<workspace>:<name>:<version>:<tick ms>.
TICK_PREFIX = "rpt"


def tick_of(job: str) -> tuple[str, int] | None:
    """The schedule name and due time (epoch ms) a tick's job id names; None for a
    job that is no tick. The prefix may carry more (a control's own copy of a tick):
    the check is per due time, not per id."""
    parts = job.split(":")
    if len(parts) != 5 or not parts[0].startswith(TICK_PREFIX):
        return None
    return parts[2], int(parts[4])


class TickFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Repeat schedules' ticks: every due time in the window fires once, not before it."""

    scenario: str
    ticks_expected: int
    ticks_fired: int
    # Due times in the window with no effect.
    ticks_missing: int
    # Due times whose effect happened more than once (by one tick id or several).
    ticks_twice: int
    # Due times whose first call started before them (by Redis's clock, this host's).
    ticks_early: int
    # Fired due times inside the window that are none of the schedule's.
    ticks_off_schedule: int
    # Fired after the bar's lateness bound.
    ticks_late: int
    tick_lateness_p50_ms: int
    tick_lateness_max_ms: int

    def line(self) -> str:
        return " ".join(f"{f}={getattr(self, f)}" for f in self.__struct_fields__)


def check_ticks(
    scenario: str,
    expected: dict[str, set[int]],
    calls: Sequence[Call],
    *,
    window_ms: tuple[int, int],
    late_after_ms: int,
) -> TickFigures:
    """The ticks' figures: `expected` are, per schedule, its due times (epoch ms)
    within `window_ms` that must each have fired once; a tick fired more than
    `late_after_ms` after its due time is late."""
    lo, hi = window_ms
    effects: collections.Counter[tuple[str, int]] = collections.Counter()
    first_start: dict[tuple[str, int], int] = {}
    for call in calls:
        tick = tick_of(call.job)
        if tick is None or tick[0] not in expected:
            continue
        if call.outcome == "ok":
            effects[tick] += 1
        first_start[tick] = min(first_start.get(tick, call.start_ns), call.start_ns)
    wanted = {(name, at) for name, dues in expected.items() for at in dues}
    fired = set(effects)
    lateness = [first_start[t] - t[1] * 1_000_000 for t in fired]
    return TickFigures(
        scenario=scenario,
        ticks_expected=len(wanted),
        ticks_fired=len(fired & wanted),
        ticks_missing=len(wanted - fired),
        ticks_twice=sum(1 for n in effects.values() if n > 1),
        # Redis's clock is in whole ms, as for delayed jobs.
        ticks_early=sum(1 for late in lateness if late < -1_000_000),
        ticks_off_schedule=len({t for t in fired - wanted if lo <= t[1] <= hi}),
        ticks_late=sum(1 for late in lateness if late > late_after_ms * 1_000_000),
        tick_lateness_p50_ms=_ms(_percentile(lateness, 0.5)),
        tick_lateness_max_ms=_ms(_percentile(lateness, 1.0)),
    )


def tick_violations(figures: TickFigures) -> list[str]:
    """The promises of repeat schedules `figures` break: each due time fired once,
    none early, none off the schedule, none later than the bound."""
    named = ("ticks_missing", "ticks_twice", "ticks_early", "ticks_off_schedule", "ticks_late")
    return [f"{n}={getattr(figures, n)}" for n in named if getattr(figures, n)]
