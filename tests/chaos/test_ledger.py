"""The battery's checker on made-up ledgers: each broken promise is named."""

from __future__ import annotations

from sluice.runtime import Client
from sluice.runtime.registry import load
from sluice.streams.connection import RedisSettings, connect
from tests.chaos.harness import BATTERY
from tests.chaos.ledger import (
    Bar,
    Call,
    Fault,
    History,
    Op,
    check,
    check_ticks,
    tick_violations,
    violations,
)


def history(**ops: tuple[str, ...]) -> History:
    """A history with one publish per outcome given, of those job ids."""
    # connect() is lazy: nothing here talks to Redis.
    made = History(Client(connect(RedisSettings()), load(BATTERY)))
    made.ops = [Op(ids, 0, 1, outcome) for outcome, ids in ops.items()]  # type: ignore[arg-type]
    return made


def ran(*jobs: str, pid: int = 1) -> list[Call]:
    return [Call(job, 1, 1, pid, 10, 20, "ok") for job in jobs]


def test_a_run_that_kept_every_promise_breaks_none() -> None:
    figures = check("t", history(ok=("a", "b"), unknown=("c",)), ran("a", "b", "c"))
    assert (figures.acknowledged, figures.completed, figures.recovered) == (2, 3, 1)
    assert violations(figures, Bar()) == []


def test_a_missing_completion_is_lost() -> None:
    figures = check("t", history(ok=("a", "b")), ran("a"))
    assert violations(figures, Bar()) == ["lost=1"]


def test_a_job_run_after_a_definite_failure_or_never_published_is_unexpected() -> None:
    figures = check("t", history(ok=("a",), fail=("b",)), ran("a", "b", "z"))
    assert violations(figures, Bar()) == ["unexpected=2"]


def test_duplicates_are_allowed_only_of_jobs_held_at_a_fault() -> None:
    calls = ran("a", "b", "a", "b", pid=2)
    made = history(ok=("a", "b"))
    assert violations(check("t", made, calls), Bar()) == ["duplicates=2"]
    made.faults.append(Fault(1, 5, frozenset({"a"})))
    figures = check("t", made, calls)
    assert (figures.duplicates, figures.duplicates_held) == (2, 1)
    assert violations(figures, Bar(duplicates="held")) == ["duplicates=2 > duplicates_held"]


def test_a_dead_poison_job_is_not_lost_and_a_dead_neighbour_is_named() -> None:
    figures = check("t", history(ok=("a", "p", "b")), ran("a"), dead={"p", "b"}, poison={"p"})
    assert (figures.lost, figures.dead) == (0, 2)
    assert violations(figures, Bar()) == ["innocent_dead=1"]


def test_a_delayed_job_that_starts_before_it_is_due_is_early() -> None:
    made = history()
    made.ops = [Op(("a", "b"), 0, 1, "ok", (0, 100))]  # b due 100 ms after the publish
    figures = check("t", made, ran("a", "b"))  # both started 10 ns after it
    assert (figures.early, violations(figures, Bar())) == (1, ["early=1"])


def test_a_call_a_zombie_starts_after_it_was_frozen_is_late() -> None:
    made = history(ok=("a", "b"))
    made.faults.append(Fault(1, 15, frozenset({"a", "b"}), frozen=True))
    calls = [Call("a", 1, 1, 1, 10, 30, "ok"), Call("b", 1, 2, 1, 40, 50, "ok")]
    figures = check("t", made, calls)
    assert (figures.late_calls, violations(figures, Bar())) == (1, ["late_calls=1"])


def tick(name: str, due_ms: int, start_ms: int, prefix: str = "rpt") -> Call:
    """A call of `name`'s tick due at `due_ms`, started at `start_ms`."""
    job = f"{prefix}:ws:{name}:7:{due_ms}"
    return Call(job, 1, 1, 1, start_ms * 1_000_000, start_ms * 1_000_000 + 5, "ok")


def test_ticks_each_fired_once_on_time_break_nothing() -> None:
    calls = [tick("a", 1000, 1003), tick("a", 2000, 2001), tick("b", 1500, 1500)]
    expected = {"a": {1000, 2000}, "b": {1500}}
    figures = check_ticks("t", expected, calls, window_ms=(1000, 2000), late_after_ms=100)
    assert (figures.ticks_fired, tick_violations(figures)) == (3, [])


def test_a_tick_missing_twice_early_late_or_off_schedule_is_named() -> None:
    calls = [
        tick("a", 2000, 2001),
        tick("a", 2000, 2002, prefix="rpt-other"),  # another copy of one due time
        tick("a", 3000, 2500),  # before its due time
        tick("a", 4000, 4500),  # beyond the bound
        tick("a", 3500, 3500),  # no due time of the schedule
    ]
    expected = {"a": {1000, 2000, 3000, 4000}}
    figures = check_ticks("t", expected, calls, window_ms=(1000, 4000), late_after_ms=100)
    assert tick_violations(figures) == [
        "ticks_missing=1",
        "ticks_twice=1",
        "ticks_early=1",
        "ticks_off_schedule=1",
        "ticks_late=1",
    ]
