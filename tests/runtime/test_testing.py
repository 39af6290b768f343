"""sluice.runtime.testing: a declared function called with data, its outcome, no Redis;
the pytest fixture's private redis-server with a worker in the test's loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from sluice.runtime import Client, InvalidPayload, Job, current_settings, function
from sluice.runtime.registry import Registry, load
from sluice.runtime.settings import from_env
from sluice.runtime.testing import Completed, Failed, Rejected, Retried, call, call_batch, running
from sluice.runtime.testing.redis import PRODUCTION
from sluice.streams.connection import RedisSettings, connect
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys
from tests.runtime.helpers import SAMPLE, total_counts, wait_until

FUNCTIONS = load(SAMPLE)
TASKS = FUNCTIONS.by_name["tasks"]
RETRY_TASKS = FUNCTIONS.by_name["retry-tasks"]
BATCH_TASKS = FUNCTIONS.by_name["batch-tasks"]
ROOT = Path(__file__).resolve().parent.parent.parent


class Greeting(msgspec.Struct):
    name: str


@function("greet", input=Greeting, timeout_s=0.05)
async def greet(job: Job[Greeting]) -> str:
    if job.data.name == "slow":
        await asyncio.Event().wait()
    return f"{current_settings().sms.default_region}: hello {job.data.name}"


@function("greet-sync", input=Greeting)
def greet_in_a_thread(job: Job[Greeting]) -> str:
    return f"hello {job.data.name}"


async def test_each_outcome_as_the_worker_would_settle_it() -> None:
    done = await call(TASKS, {"n": 1, "note": "kept"})
    assert done == Completed({"note": "kept", "n": 1})
    retried = await call(TASKS, {"n": 2, "mode": "retry", "retry_after_ms": 1500})
    assert retried == Retried(1.5, "Retry: retry requested after 1.5 s")
    rejected = await call(TASKS, {"n": 3, "mode": "reject"})
    assert isinstance(rejected, Rejected)
    assert rejected.error == "Reject: task 3 can never work"
    failed = await call(TASKS, {"n": 4, "mode": "raise"})
    assert isinstance(failed, Failed)
    assert failed.error == "ValueError: task 4 refused"
    assert "in _act" in failed.traceback
    assert isinstance(failed.exception, ValueError)
    # tasks has one attempt, retry-tasks three: the first of those is retried.
    assert failed.dead
    first = await call(RETRY_TASKS, {"n": 5, "mode": "raise"})
    assert isinstance(first, Failed)
    assert not first.dead
    last = await call(RETRY_TASKS, {"n": 5, "mode": "raise"}, attempt=3)
    assert isinstance(last, Failed)
    assert last.dead


async def test_a_batch_gives_each_job_its_outcome() -> None:
    outcomes = await call_batch(
        BATCH_TASKS, [{"n": 1}, {"n": 2, "mode": "raise"}, {"n": 3}], workspace="acme"
    )
    assert outcomes == [
        Completed(),
        Failed("task 2 refused", "", dead=True),
        Completed(),
    ]


async def test_data_is_checked_and_the_handler_sees_its_settings_and_timeout() -> None:
    with pytest.raises(InvalidPayload, match=r"\$\.name"):
        await call(greet, {"name": 7})
    settings = from_env({"SLUICE_SMS_DEFAULT_REGION": "CH"})
    assert await call(greet, Greeting("ada"), settings=settings) == Completed("CH: hello ada")
    assert await call(greet_in_a_thread, {"name": "bob"}) == Completed("hello bob")
    slow = await call(greet, {"name": "slow"})
    assert isinstance(slow, Failed)
    assert slow.error == "timed out after 0.05 s"
    with pytest.raises(ValueError, match="one job a call"):
        await call_batch(greet, [{"name": "a"}, {"name": "b"}])


def test_the_servers_run_with_the_production_configuration() -> None:
    directives = [
        tuple(line.split(None, 1))
        for line in (ROOT / "infra" / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [(name, value.strip('"')) for name, value in directives] == list(PRODUCTION)


async def test_the_fixture_server_runs_a_users_function_end_to_end(sluice_redis_url: str) -> None:
    redis = connect(RedisSettings(url=sluice_redis_url))
    registry = Registry([greet_in_a_thread])
    try:
        receipt = await Client(redis, registry).publish(
            "greet-sync", workspace="acme", data={"name": "eve"}
        )
        async with running([greet_in_a_thread], sluice_redis_url):

            async def completed() -> bool:
                return (await total_counts(redis, "greet-sync")).completed == 1

            await wait_until(completed, what="the job to complete")
        record = await get_job(redis, PartitionKeys("greet-sync", 0), receipt.id)
        assert record is not None
        assert record.result == "hello eve"
    finally:
        await redis.aclose()
