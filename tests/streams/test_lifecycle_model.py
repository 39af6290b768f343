"""A stateful test of the lifecycle scripts against a model, on a real redis-server.

Random sequences of publish (now or later), cancel, reschedule, promotion and
handling; whatever the order, every job ends exactly once: handled or cancelled,
never both, never twice. Due times stand in for the clock: a job is made due by
rescheduling it into the past, so no test waits for time to pass.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streams import envelope as env
from streams.cancel import cancel, reschedule
from streams.connection import RedisSettings, connect
from streams.consume import ensure_group, read
from streams.delayed import promote_due
from streams.jobs import counts
from streams.keys import PartitionKeys
from streams.publish import Outgoing, publish
from streams.settle import Settlement, settle
from tests.redis_server import RedisServer

KEYS = PartitionKeys("model", 0)
LATER_MS = 3_600_000
T = TypeVar("T")


class Lifecycle(RuleBasedStateMachine):
    """Model: each job is delayed, queued, handled or cancelled."""

    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.redis = connect(RedisSettings(url=self.url))
        self.run(self._flush())
        self.run(ensure_group(self.redis, KEYS))
        self.state: dict[str, str] = {}
        self.due: set[str] = set()  # delayed jobs whose due time has passed
        self.handled: collections.Counter[str] = collections.Counter()
        self.next_id = 0

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(work)

    async def _flush(self) -> None:
        await self.redis.flushall()

    def _publish(self, delay_ms: int) -> str:
        job_id = f"j{self.next_id}"
        self.next_id += 1
        e = env.Envelope(job_id, "model", "ws", env.encode_payload(None), env.now_ms())
        (written,) = self.run(publish(self.redis, KEYS, [Outgoing(e, delay_ms=delay_ms)]))
        assert written.created
        self.state[job_id] = "delayed" if delay_ms else "queued"
        return job_id

    @rule()
    def publish_now(self) -> None:
        self._publish(0)

    @rule()
    def publish_later(self) -> None:
        self._publish(LATER_MS)

    @precondition(lambda self: self.state)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.state)))
        outcome = self.run(cancel(self.redis, KEYS, "id", job_id))[job_id]
        before = self.state[job_id]
        if before in ("delayed", "queued", "cancelled"):
            assert outcome == "cancelled"
            self.state[job_id] = "cancelled"
            self.due.discard(job_id)
        else:
            assert outcome == "completed"

    @precondition(lambda self: self.state)
    @rule(data=st.data(), past=st.booleans())
    def reschedule(self, data: st.DataObject, past: bool) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.state)))
        if past:
            outcome = self.run(reschedule(self.redis, KEYS, job_id, due_ms=1))
        else:
            outcome = self.run(reschedule(self.redis, KEYS, job_id, delay_ms=LATER_MS))
        if self.state[job_id] == "delayed":
            assert outcome == "delayed"
            if past:
                self.due.add(job_id)
            else:
                self.due.discard(job_id)
        else:
            assert outcome == self.state[job_id].replace("handled", "completed")

    @rule()
    def promote(self) -> None:
        moved = self.run(promote_due(self.redis, KEYS, 1000)).moved
        assert moved == len(self.due)
        for job_id in self.due:
            self.state[job_id] = "queued"
        self.due.clear()

    @precondition(lambda self: "queued" in self.state.values())
    @rule()
    def handle(self) -> None:
        got = self.run(read(self.redis, KEYS, "c1", 1000, 1))
        ids = [env.decode(d.envelope).id for d in got]
        assert sorted(ids) == sorted(j for j, s in self.state.items() if s == "queued")
        done = [
            Settlement(d.entry_id, i, "ws", "completed", 1) for d, i in zip(got, ids, strict=True)
        ]
        self.run(settle(self.redis, KEYS, "c1", LATER_MS, done, len(done)))
        for job_id in ids:
            self.handled[job_id] += 1
            self.state[job_id] = "handled"

    @invariant()
    def redis_holds_what_the_model_holds(self) -> None:
        c = self.run(counts(self.redis, KEYS))
        queued = sum(1 for s in self.state.values() if s == "queued")
        delayed = sum(1 for s in self.state.values() if s == "delayed")
        assert (c.waiting, c.active, c.delayed) == (queued, 0, delayed)

    @invariant()
    def each_job_ends_once(self) -> None:
        assert all(n == 1 for n in self.handled.values())
        cancelled = {j for j, s in self.state.items() if s == "cancelled"}
        assert not cancelled & set(self.handled)

    def teardown(self) -> None:
        # Drain: make everything still delayed due, promote, handle.
        try:
            for job_id, s in list(self.state.items()):
                if s == "delayed":
                    self.reschedule_past(job_id)
            self.promote()
            if "queued" in self.state.values():
                self.handle()
            assert all(s in ("handled", "cancelled") for s in self.state.values())
        finally:
            self.run(self.redis.aclose())
            self.runner.close()

    def reschedule_past(self, job_id: str) -> None:
        assert self.run(reschedule(self.redis, KEYS, job_id, due_ms=1)) == "delayed"
        self.due.add(job_id)


def test_every_job_ends_exactly_once(shared_server: RedisServer) -> None:
    Lifecycle.url = shared_server.url
    machine = Lifecycle.TestCase
    machine.settings = settings(
        max_examples=60,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine().runTest()
