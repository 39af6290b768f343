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

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sluice.streams import envelope as env
from sluice.streams.cancel import cancel_job, reschedule
from sluice.streams.connection import RedisSettings, connect
from sluice.streams.consume import ensure_group, read, refill, taken
from sluice.streams.delayed import promote_due
from sluice.streams.jobs import counts
from sluice.streams.keys import PartitionKeys
from sluice.streams.publish import Outgoing, publish
from sluice.streams.settle import Completed, settle
from tests.conftest import SLOW_ON_CLUSTER

KEYS = PartitionKeys("model", 0)
LATER_MS = 3_600_000
# Each workspace's share of the stream: small, so backlogs come into play.
SHARE = 4
T = TypeVar("T")


WORKSPACES = st.sampled_from(["a", "b"])
PRIORITIES = st.sampled_from([env.HIGH, env.NORMAL, env.LOW])


class Lifecycle(RuleBasedStateMachine):
    """Model: each job is delayed, queued, handled or cancelled; the stream holds
    up to SHARE of each workspace's queued jobs, the rest wait in its backlog."""

    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.redis = connect(RedisSettings(url=self.url))
        self.run(self._flush())
        self.run(ensure_group(self.redis, KEYS))
        self.state: dict[str, str] = {}
        self.workspace: dict[str, str] = {}
        self.due: set[str] = set()  # delayed jobs whose due time has passed
        self.handled: collections.Counter[str] = collections.Counter()
        self.next_id = 0

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(work)

    async def _flush(self) -> None:
        await self.redis.flushall()

    def _publish(self, delay_ms: int, workspace: str, priority: int) -> str:
        job_id = f"j{self.next_id}"
        self.next_id += 1
        e = env.Envelope(
            job_id, "model", workspace, env.encode_payload(None), env.now_ms(), priority=priority
        )
        (written,) = self.run(publish(self.redis, KEYS, [Outgoing(e, delay_ms=delay_ms)], SHARE))
        assert written.created
        self.state[job_id] = "delayed" if delay_ms else "queued"
        self.workspace[job_id] = workspace
        return job_id

    @rule(workspace=WORKSPACES, priority=PRIORITIES)
    def publish_now(self, workspace: str, priority: int) -> None:
        self._publish(0, workspace, priority)

    @rule(workspace=WORKSPACES, priority=PRIORITIES, n=st.integers(2, 9))
    def publish_burst(self, workspace: str, priority: int, n: int) -> None:
        """A campaign: more than the workspace's share, so most wait in its backlog."""
        for _ in range(n):
            self._publish(0, workspace, priority)

    @rule(workspace=WORKSPACES, priority=PRIORITIES)
    def publish_later(self, workspace: str, priority: int) -> None:
        self._publish(LATER_MS, workspace, priority)

    @precondition(lambda self: self.state)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.state)))
        outcome = self.run(cancel_job(self.redis, KEYS, [job_id], share=SHARE))
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
            outcome = self.run(reschedule(self.redis, KEYS, [job_id], due_ms=1))
        else:
            outcome = self.run(reschedule(self.redis, KEYS, [job_id], delay_ms=LATER_MS))
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
        moved = self.run(promote_due(self.redis, KEYS, 1000, SHARE)).moved
        assert moved == len(self.due)
        for job_id in self.due:
            self.state[job_id] = "queued"
        self.due.clear()

    @precondition(lambda self: "queued" in self.state.values())
    @rule(count=st.integers(1, 5))
    def handle(self, count: int = 1000) -> None:
        got = self.run(read(self.redis, KEYS, "c1", count, 1))
        self.run(refill(self.redis, KEYS, taken(got), len(got) < count, SHARE))
        ids = [env.decode(d.envelope).id for d in got]
        assert ids
        assert all(self.state[j] == "queued" for j in ids)
        done = [
            Completed(d.entry_id, i, self.workspace[i], 1) for d, i in zip(got, ids, strict=True)
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
    def the_stream_holds_each_workspaces_share(self) -> None:
        """Fair: the stream holds at most SHARE of a workspace's queued jobs, and while
        more wait in its backlog, over half of SHARE (it is topped up at half)."""
        queued = collections.Counter(
            self.workspace[j] for j, s in self.state.items() if s == "queued"
        )
        unread = self.run(self._unread())
        for workspace in {*queued, *unread}:
            n, waiting = unread[workspace], queued[workspace] - unread[workspace]
            assert n <= SHARE
            assert waiting >= 0
            assert not waiting or n > SHARE // 2, (workspace, n, waiting)

    async def _unread(self) -> collections.Counter[str]:
        groups = await self.redis.xinfo_groups(KEYS.stream)
        last = groups[0]["last-delivered-id"].decode() if groups else "0-0"
        unread: Any = await self.redis.xrange(KEYS.stream, min=f"({last}")
        return collections.Counter(fields[b"w"].decode() for _, fields in unread)

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
            while "queued" in self.state.values():
                self.handle()
            assert all(s in ("handled", "cancelled") for s in self.state.values())
        finally:
            self.run(self.redis.aclose())
            self.runner.close()

    def reschedule_past(self, job_id: str) -> None:
        assert self.run(reschedule(self.redis, KEYS, [job_id], due_ms=1)) == "delayed"
        self.due.add(job_id)


@pytest.mark.parametrize("where", SLOW_ON_CLUSTER)
def test_every_job_ends_exactly_once(where: str, request: pytest.FixtureRequest) -> None:
    # The shared single server, or the shared 3-master cluster with --long.
    fixture = "shared_server" if where == "server" else "shared_cluster"
    Lifecycle.url = request.getfixturevalue(fixture).url
    machine = Lifecycle.TestCase
    machine.settings = settings(
        max_examples=60,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine().runTest()
