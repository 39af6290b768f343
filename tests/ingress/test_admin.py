"""Queues, pause and resume, dead letters, metrics and limits over HTTP, with a worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.runtime import Client, DeadLetters, Event, Jobs
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from sluice.streams.jobs import counts
from sluice.streams.keys import PartitionKeys
from tests.ingress.conftest import Api
from tests.redis_server import RedisServer
from tests.runtime.helpers import (
    SAMPLE,
    blocked_readers,
    read_ledger,
    total_counts,
    wait_until,
    worker_in_process,
)


async def queue_of(api: Api, function: str) -> dict[str, object]:
    answer = await api.http.get("/v1/queues", headers=api.auth("admin"))
    assert answer.status == 200
    (queue,) = [q for q in (await answer.json())["queues"] if q["function"] == function]
    return queue  # type: ignore[no-any-return]


async def test_a_paused_function_starts_nothing_until_resumed(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    admin = api.auth("admin")
    async with worker_in_process(shared_server.url, "tasks"):

        async def reading() -> bool:
            return await blocked_readers(redis) == 1

        await wait_until(reading, what="the worker reading")
        assert (await api.http.post("/v1/queues/tasks/pause", headers=admin)).status == 204
        assert (await queue_of(api, "tasks"))["paused"] is True

        async def stopped() -> bool:
            return await blocked_readers(redis) == 0

        # Within its next look at the flag, the worker no longer reads.
        await wait_until(stopped, what="the worker paused")
        events = [{"workspace": "acme", "data": {"n": i}} for i in range(20)]
        assert (await api.post("/v1/events/tasks", events)).status == 202
        queue = await queue_of(api, "tasks")
        assert queue["counts"]["waiting"] == 20  # type: ignore[index]
        assert not read_ledger(ledger)
        assert (await api.http.post("/v1/queues/tasks/resume", headers=admin)).status == 204

        async def all_handled() -> bool:
            return len(read_ledger(ledger)) == 20

        await wait_until(all_handled, what="the jobs handled after resume")
    assert (await queue_of(api, "tasks"))["paused"] is False


async def test_dead_letters_metrics_and_limits(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    admin = api.auth("admin")
    events = [{"workspace": "acme", "data": {"n": i, "mode": "raise"}} for i in range(3)]
    events.append({"workspace": "acme", "data": {"n": 9}})
    async with worker_in_process(shared_server.url, "tasks"):
        assert (await api.post("/v1/events/tasks", events)).status == 202

        async def dead() -> bool:
            answer = await api.http.get("/v1/dead-letters/tasks", headers=api.auth("acme"))
            return len((await answer.json())["letters"]) == 3

        await wait_until(dead, what="three dead letters")
        letters = (await (await api.http.get("/v1/dead-letters/tasks", headers=admin)).json())[
            "letters"
        ]
        assert all(letter["errors"] == [letter["reason"]] for letter in letters)
        # Each failed attempt's traceback, naming the handler's functions (its end: the error).
        for letter in letters:
            (traceback,) = letter["tracebacks"]
            assert "in _act" in traceback
            assert traceback.rstrip().endswith(letter["reason"])
        shown = await api.http.get(f"/v1/jobs/{letters[1]['id']}", headers=api.auth("acme"))
        (failure,) = (await shown.json())["failures"]
        assert failure["error"] == letters[1]["reason"]
        assert failure["traceback"] == letters[1]["tracebacks"][0]
        replay = await api.post(
            "/v1/dead-letters/tasks/replay", {"ids": [letters[0]["id"]]}, who="acme"
        )
        assert await replay.json() == {"replayed": 1}

        async def flushed() -> bool:
            answer = await api.http.get("/v1/metrics/workspace/acme", headers=api.auth("acme"))
            processed: int = (await answer.json())["functions"]["tasks"]["processed"]
            return processed >= 5

        await wait_until(flushed, what="metrics flushed")
    answer = await api.http.get("/v1/metrics?function=tasks", headers=admin)
    tasks = (await answer.json())["functions"]["tasks"]
    assert (tasks["succeeded"], tasks["dead"]) == (1, 4)
    reset = await api.post("/v1/metrics/reset", {"function": "tasks"}, who="admin")
    assert reset.status == 204
    answer = await api.http.get("/v1/metrics", headers=admin)
    assert (await answer.json())["functions"]["tasks"]["processed"] == 0
    # Limits: a tier override for one workspace, then back to the declared rate.
    path = "/v1/limits/limited-tasks/workspace/acme"
    assert (await api.http.put(path, json={"rate_per_s": 5}, headers=admin)).status == 204
    assert (await api.http.put(path, json={"rate_per_s": None}, headers=admin)).status == 204
    view = await (await api.http.get("/v1/limits/limited-tasks", headers=admin)).json()
    assert (view["rate_per_s"], view["deferrals"]) == (50.0, {})
    bad = await api.http.put(path, json={"rate_per_s": -1}, headers=admin)
    assert bad.status == 422


async def test_prometheus_text_has_the_deployments_figures(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    events = [{"workspace": "acme", "data": {"n": i}} for i in range(2)]
    events.append({"workspace": "acme", "data": {"n": 2, "mode": "raise"}})
    later = [{"workspace": "acme", "data": {"n": 9}, "delay_ms": d} for d in (30_000, 600_000)]
    async with worker_in_process(shared_server.url, "tasks"):
        assert (await api.post("/v1/events/tasks", events)).status == 202
        assert (await api.post("/v1/events/tasks", later)).status == 202

        async def handled() -> bool:
            found = await counts(redis, PartitionKeys("tasks", 0))
            return len(read_ledger(ledger)) == 2 and found.dead == 1

        await wait_until(handled, what="two jobs handled and one dead")
    assert (await api.http.get("/metrics", headers=api.auth("acme"))).status == 403
    answer = await api.http.get("/metrics", headers=api.auth("admin"))
    assert answer.status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await answer.text())
        for s in family.samples
    }
    tasks = (("function", "tasks"),)
    assert samples["sluice_jobs_published_total", tasks] == 5
    assert samples["sluice_jobs_completed_total", tasks] == 2
    assert samples["sluice_jobs_processed_total", tasks] == 3
    # "tasks" makes one attempt: its failure is dead at once, never retried.
    assert samples["sluice_jobs_dead_total", tasks] == 1
    assert samples["sluice_jobs_retried_total", tasks] == 0
    assert samples["sluice_jobs_delayed", tasks] == 2
    due = {
        m: samples["sluice_jobs_due_soon", (*tasks, ("within_minutes", m))]
        for m in ("1", "5", "15")
    }
    assert due == {"1": 1, "5": 1, "15": 2}


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await api.http.get("/metrics", headers=api.auth("admin"))
    assert answer.status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await answer.text())
        for s in family.samples
    }


HISTOGRAMS = ("sluice_handler_duration_seconds", "sluice_job_latency_seconds",
              "sluice_job_lateness_seconds")  # fmt: skip


async def test_prometheus_histograms_of_call_time_latency_and_lateness_count_the_jobs_run(
    api: Api, shared_server: RedisServer, ledger: Path
) -> None:
    events: list[dict[str, object]] = [{"workspace": "acme", "data": {"n": i}} for i in range(2)]
    events.append({"workspace": "acme", "data": {"n": 2}, "delay_ms": 50})
    tasks = (("function", "tasks"),)
    async with worker_in_process(shared_server.url, "tasks", scheduler=True):
        assert (await api.post("/v1/events/tasks", events)).status == 202

        async def flushed() -> bool:
            found = await scrape(api)
            return (found.get((f"{HISTOGRAMS[1]}_count", tasks)),
                    found.get((f"{HISTOGRAMS[2]}_count", tasks))) == (3, 1)  # fmt: skip

        await wait_until(flushed, what="three jobs' metrics flushed")
    samples = await scrape(api)
    # Calls and completions of the three jobs; lateness of the one published for later.
    for name, expected in zip(HISTOGRAMS, (3, 3, 1), strict=True):
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (sample, labels), value in samples.items()
            if sample == f"{name}_bucket" and ("function", "tasks") in labels
        )
        assert len(buckets) > 10, name
        counted = [value for _, value in buckets]
        assert counted == sorted(counted), name  # cumulative
        assert buckets[-1] == (float("inf"), expected), name
        assert samples[f"{name}_count", tasks] == expected
        assert samples[f"{name}_sum", tasks] >= 0
    # The gauges they replace are gone.
    assert not [s for s, _ in samples if "p95" in s or "duration_avg" in s]


async def test_old_dead_letters_go_with_their_records_and_replay_finds_nothing(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    registry = load(SAMPLE)
    client = Client(redis, registry)
    reject = {"n": 0, "mode": "reject"}
    async with worker_in_process(shared_server.url, "doomed-tasks"):
        old = [(await client.publish("doomed-tasks", workspace="acme", data=reject)).id]
        old.append((await client.publish("doomed-tasks", workspace="acme", data=reject)).id)

        async def dead(n: int) -> bool:
            return (await total_counts(redis, "doomed-tasks")).failed == n

        await wait_until(lambda: dead(2), what="two dead letters")
        events = [Event(workspace="acme", data=reject) for _ in range(3)]
        new = [r.id for r in await client.publish_many("doomed-tasks", events)]
        await wait_until(lambda: dead(5), what="five dead letters")
    # Only the newest 3 (dead_retention_count) are kept, with their records.
    letters = await DeadLetters(redis, registry).read("doomed-tasks")
    assert sorted(letter.envelope.id for letter in letters) == sorted(new)
    assert (await total_counts(redis, "doomed-tasks")).dead == 3
    jobs = Jobs(redis, registry)
    assert [await jobs.get("doomed-tasks", job_id) for job_id in old] == [None, None]
    for job_id in new:
        record = await jobs.get("doomed-tasks", job_id)
        assert record is not None
        assert record.state == "dead"
    # A trimmed letter is not found: nothing replayed, the job unknown.
    assert await DeadLetters(redis, registry).replay("doomed-tasks", ids=old) == 0
    replay = await api.post("/v1/dead-letters/doomed-tasks/replay", {"ids": old}, who="acme")
    assert (replay.status, await replay.json()) == (200, {"replayed": 0})
    gone = await api.http.get(f"/v1/jobs/{old[0]}", headers=api.auth("acme"))
    assert gone.status == 404
    listed = await api.http.get(
        "/v1/jobs?function=doomed-tasks&state=dead", headers=api.auth("admin")
    )
    assert sorted(job["id"] for job in (await listed.json())["jobs"]) == sorted(new)


async def test_a_limit_set_over_http_holds_for_a_function_declared_without_one(
    api: Api, redis: Redis, shared_server: RedisServer, ledger: Path
) -> None:
    admin = api.auth("admin")
    put = await api.http.put("/v1/limits/tasks", json={"rate_per_s": 10}, headers=admin)
    assert put.status == 204
    events = [{"workspace": "acme", "data": {"n": i}} for i in range(20)]
    assert (await api.post("/v1/events/tasks", events)).status == 202
    async with worker_in_process(shared_server.url, "tasks", scheduler=True):

        async def all_done() -> bool:
            return (await total_counts(redis, "tasks")).completed == 20

        await wait_until(all_done, what="20 jobs under a global override")
    view = await (await api.http.get("/v1/limits/tasks", headers=admin)).json()
    assert view["deferrals"]["acme"]["limit"] == "global"
    assert 1 <= view["deferrals"]["acme"]["count"] <= 10


@pytest.mark.parametrize("rate", [0, -5, 1e-300, 2e6, "fast"])
async def test_a_rate_no_limit_can_have_is_a_client_error(
    api: Api, redis: Redis, rate: object
) -> None:
    admin = api.auth("admin")
    for path in ("/v1/limits/tasks", "/v1/limits/tasks/workspace/acme"):
        put = await api.http.put(path, json={"rate_per_s": rate}, headers=admin)
        assert put.status == 422, (path, rate, await put.text())
    assert await redis.exists(PartitionKeys("tasks", 0).limits) == 0
