"""The BullMQ service's routes, with the issue's example bodies: the shapes a
queue-services app expects, field by field, the workspace taken from the key when
the body names none, and the metrics reset forgetting rate-limit deferrals."""

from __future__ import annotations

import re
import time
from typing import Any

from sluice.runtime import Jobs, Limits
from sluice.runtime.ingress.app import ROUTES
from sluice.streams import metrics as store
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.consume import refill
from sluice.streams.ratelimit import Ask, Rates
from tests.ingress.conftest import Api, registry, start_api
from tests.redis_server import RedisServer

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SMS_FIELDS = ["totalProcessed", "batchesProcessed", "successRate", "avgProcessingTime",
              "throughput", "rateExceededCount", "lastProcessedTime"]  # fmt: skip


async def seed_metrics(redis: Redis, workspace: str) -> int:
    """sms.send's metrics as a worker flushes them: 1,000 jobs in 25 calls of 120 ms
    on average, 998 succeeded, 2,520 in the last minute (42/s), 3 rate-limited."""
    (keys,) = registry().partitions("sms.send", workspace, cluster=False)
    now_ms = int(time.time() * 1000)
    counts = {"processed": 1000, "succeeded": 998, "failed": 2, "batches": 25, "time_ms": 3000,
              "rate_limited": 3}  # fmt: skip
    batch = store.Batch(
        counts={f"{scope}|{c}": n for scope in ("*", workspace) for c, n in counts.items()},
        ring=[(scope, now_ms // 1000, 2520) for scope in ("*", workspace)],
        last={"*": now_ms, workspace: now_ms},
    )
    await store.flush(redis, keys, batch)
    return now_ms


async def defer(redis: Redis, function: str, workspace: str, asked: int, rate: float) -> None:
    """A worker's read of `asked` jobs over the function's global `rate`."""
    (keys,) = registry().partitions(function, workspace, cluster=False)
    await refill(redis, keys, {}, False, ask=Ask({workspace: asked}, Rates(rate, 0.0, 1.0)))


async def test_metrics_have_the_seeds_shape(api: Api, redis: Redis) -> None:
    last_ms = await seed_metrics(redis, "acme")
    await defer(redis, "sms.send", "acme", 75, 50)
    answer = await api.http.get("/api/metrics", headers=api.auth("admin"))
    assert answer.status == 200
    shown = await answer.json()
    assert list(shown) == ["sms", "email", "workspaceRateLimits", "timestamp"]
    assert list(shown["sms"]) == list(shown["email"]) == SMS_FIELDS
    sms = shown["sms"]
    assert sms["totalProcessed"] == 1000
    assert sms["batchesProcessed"] == 25
    assert sms["successRate"] == 99.8
    assert sms["avgProcessingTime"] == 120
    assert sms["throughput"] == 42
    assert sms["rateExceededCount"] == 3
    assert sms["lastProcessedTime"] == iso(last_ms)
    assert shown["email"] == dict(zip(SMS_FIELDS, [0, 0, 0, 0, 0, 0, None], strict=True))
    acme = shown["workspaceRateLimits"]["acme"]
    assert list(acme) == ["sms", "email"]
    assert acme["sms"]["count"] == 25
    assert ISO_MS.match(acme["sms"]["lastExceeded"])
    assert acme["email"] == {"count": 0, "lastExceeded": None}
    assert ISO_MS.match(shown["timestamp"])
    # A workspace key sees its own workspace's figures only.
    await seed_metrics(redis, "other")
    await defer(redis, "sms.send", "other", 60, 50)
    mine = await (await api.http.get("/api/metrics", headers=api.auth("other"))).json()
    assert mine["sms"]["totalProcessed"] == 1000
    assert list(mine["workspaceRateLimits"]) == ["other"]


def iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + (
        f".{epoch_ms % 1000:03d}Z"
    )


async def test_a_workspaces_rate_limit_record_has_the_seeds_shape(api: Api, redis: Redis) -> None:
    await defer(redis, "sms.send", "acme", 75, 50)
    answer = await api.http.get("/api/metrics/workspace/acme", headers=api.auth("acme"))
    assert answer.status == 200
    shown = await answer.json()
    assert list(shown) == ["workspaceId", "sms", "email", "timestamp"]
    assert shown["workspaceId"] == "acme"
    sms = shown["sms"]
    assert list(sms) == ["count", "lastExceeded", "details"]
    assert sms["count"] == 25
    (detail,) = sms["details"]
    assert detail == {"timestamp": sms["lastExceeded"], "batchSize": 75,
                      "errorMessage": "Rate limit exceeded: 50 per second"}  # fmt: skip
    assert ISO_MS.match(detail["timestamp"])
    assert shown["email"] == {"count": 0, "lastExceeded": None, "details": []}
    assert ISO_MS.match(shown["timestamp"])
    refused = await api.http.get("/api/metrics/workspace/acme", headers=api.auth("other"))
    assert refused.status == 403


async def test_the_seeds_reset_clears_a_workspaces_metrics_and_deferrals(
    api: Api, redis: Redis
) -> None:
    for workspace in ("acme", "other"):
        await seed_metrics(redis, workspace)
        await defer(redis, "sms.send", workspace, 75, 50)
        await defer(redis, "email.send", workspace, 120, 100)
    answer = await api.post("/api/metrics/reset", {"type": "sms", "workspaceId": "acme"})
    assert answer.status == 200
    assert (await answer.json())["success"] is True
    acme = await (
        await api.http.get("/api/metrics/workspace/acme", headers=api.auth("acme"))
    ).json()
    assert acme["sms"] == {"count": 0, "lastExceeded": None, "details": []}
    assert acme["email"]["count"] == 20  # not the type reset
    assert await Limits(redis, registry()).history("sms.send", "acme") == []
    mine = await (await api.http.get("/api/metrics", headers=api.auth("acme"))).json()
    assert mine["sms"]["totalProcessed"] == 0
    # Another workspace's stay, and its key may not reset them from here.
    assert len(await Limits(redis, registry()).history("sms.send", "other")) == 1
    refused = await api.post("/api/metrics/reset", {"workspaceId": "other"})
    assert refused.status == 403
    # No type: both channels; no workspaceId: the key's.
    assert (await api.post("/api/metrics/reset", {})).status == 200
    assert await Limits(redis, registry()).history("email.send", "acme") == []
    bad = await api.post("/api/metrics/reset", {"type": "fax"})
    assert bad.status == 422


async def test_the_workspace_comes_from_the_key_when_the_body_names_none(
    api: Api, redis: Redis
) -> None:
    jobs = Jobs(redis, registry())
    sms = {"phoneNumber": "+15550100", "message": "See you at 10",
           "scheduledFor": "2030-01-01T09:00:00.000Z",
           "metadata": {"booking": {"id": 7}}}  # fmt: skip
    email = {"to": "ada@example.com", "subject": "Hi", "html": "<p>Hi</p>", "contactId": "c-1",
             "delay": 60_000}  # fmt: skip
    for path, body, function in (
        ("/api/schedule-sms", sms, "sms.send"),
        ("/api/schedule-email", email, "email.send"),
        ("/api/jobs", email, "email.send"),
    ):
        answer = await api.post(path, body)
        assert answer.status == 202, await answer.text()
        reply = await answer.json()
        assert list(reply) == ["success", "jobId"]
        record = await jobs.get(function, reply["jobId"], workspace="acme")
        assert record is not None, path
        assert record.state == "delayed"
        named = await api.post(path, {**body, "workspaceId": "acme"})
        assert named.status == 202
        other = await api.post(path, {**body, "workspaceId": "other"})
        assert other.status == 403, path
        # An admin key has no workspace of its own: the body must name one.
        admin = await api.post(path, body, who="admin")
        assert admin.status == 422
        assert (await admin.json())["errors"][0]["path"] == "$.workspaceId"
    record = await jobs.get("email.send", reply["jobId"], workspace="acme")
    assert record is not None
    shown = {k: record.data[k] for k in ("to", "subject", "html", "contact_id")}
    assert shown == {"to": "ada@example.com", "subject": "Hi", "html": "<p>Hi</p>",
                     "contact_id": "c-1"}  # fmt: skip


async def test_the_dashboards_old_addresses_serve_it(api: Api) -> None:
    page = await (await api.http.get("/admin")).read()
    for path in ("/admin/queues", "/dashboard"):
        answer = await api.http.get(path)
        assert (answer.status, answer.content_type) == (200, "text/html")
        assert await answer.read() == page


async def test_queue_health_shows_redis_and_each_queues_counts(api: Api) -> None:
    await api.post("/api/schedule-sms", {"phoneNumber": "+15550100", "message": "later",
                   "scheduledFor": "2030-01-01T09:00:00Z"})  # fmt: skip
    answer = await api.http.get("/api/v1/queue/health", headers=api.auth("admin"))
    assert answer.status == 200
    shown: dict[str, Any] = await answer.json()
    assert list(shown) == ["status", "redis", "queues", "timestamp"]
    assert shown["status"] == "ok"
    assert shown["redis"]["reachable"] is True
    assert shown["redis"]["latencyMs"] >= 0
    assert set(shown["queues"]) == {fn.name for fn in registry()}
    assert shown["queues"]["sms.send"] == {"waiting": 0, "active": 0, "delayed": 1, "failed": 0}
    # A workspace key: Redis's state, not the counts of every workspace's jobs.
    mine = await (await api.http.get("/api/v1/queue/health", headers=api.auth("acme"))).json()
    assert (mine["status"], mine["queues"]) == ("ok", {})
    assert (await api.http.get("/api/v1/queue/health")).status == 401


async def test_the_migration_routes_are_tagged_apart(api: Api) -> None:
    spec = await (await api.http.get("/openapi.json")).json()
    seed = {"/api/schedule-sms", "/api/schedule-email", "/api/jobs", "/api/metrics",
            "/api/metrics/workspace/{workspace}", "/api/metrics/reset", "/admin/queues",
            "/dashboard", "/api/v1/queue/health"}  # fmt: skip
    tagged = {path for path, ops in spec["paths"].items()
              for op in ops.values() if op["tags"] == ["migration"]}  # fmt: skip
    assert tagged == seed
    assert {r.path for r in ROUTES if r.tag == "migration"} == seed


async def test_queue_health_is_503_while_redis_is_away(server: RedisServer) -> None:
    redis = connect(RedisSettings(url=server.url, connect_timeout_s=0.3, retries=0))
    api = await start_api(redis, server.url)
    try:
        server.kill()
        answer = await api.http.get("/api/v1/queue/health", headers=api.auth("admin"))
        assert answer.status == 503
        shown = await answer.json()
        assert (shown["status"], shown["redis"], shown["queues"]) == (
            "unavailable", {"reachable": False, "latencyMs": 0.0}, {})  # fmt: skip
    finally:
        await api.http.close()
        await redis.aclose()
