"""The HTTP API's bodies are its own: no route answers or takes a type of the client
API or the data layer, and each view of a stored thing shows it as the API always
has (field names, types and order of its JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from sluice.runtime.client import metrics
from sluice.runtime.ingress import views
from sluice.runtime.ingress.app import ROUTES
from sluice.streams import consumers, jobs, ratelimit, repeats, tagged, webhooks


def _structs(kind: mi.Type, seen: set[type]) -> Iterator[type]:
    """Every Struct class `kind` holds, at any depth."""
    if isinstance(kind, mi.StructType):
        if kind.cls in seen:
            return
        seen.add(kind.cls)
        yield kind.cls
        for field in kind.fields:
            yield from _structs(field.type, seen)
        return
    for name in kind.__struct_fields__:
        value = getattr(kind, name)
        for inner in value if isinstance(value, tuple) else (value,):
            if isinstance(inner, mi.Type):
                yield from _structs(inner, seen)


def _route_types() -> list[Any]:
    found: list[Any] = []
    for route in ROUTES:
        for kind in (route.body, *route.replies.values()):
            if isinstance(kind, tuple):
                found += kind
            elif kind is not None and not isinstance(kind, str):
                found.append(kind)
    return found


def test_no_route_answers_or_takes_a_type_of_the_layers_below() -> None:
    seen: set[type] = set()
    structs = [s for kind in _route_types() for s in _structs(mi.type_info(kind), seen)]
    foreign = [f"{s.__module__}.{s.__qualname__}" for s in structs
               if not s.__module__.startswith("sluice.runtime.ingress.")]  # fmt: skip
    assert foreign == []
    assert views.JobRecord in structs  # the walk reaches the views


def test_the_walk_finds_a_storage_struct_inside_a_body() -> None:
    class Page(msgspec.Struct):
        jobs: list[jobs.JobRecord] | None

    found = set(_structs(mi.type_info(dict[str, Page]), set()))
    assert found == {Page, jobs.JobRecord, jobs.FailedAttempt}


RECORD = jobs.JobRecord(
    id="j1", function="tasks", workspace="acme", state="completed", queued_ms=1, finished_ms=2,
    started_ms=1, ran_ms=1, due_ms=3, attempts=4, error="boom", key="k", tags=("a", "b"),
    result={"ok": [1]},
    consumer="w1", deliveries=5, priority="high", data={"to": "+15550100"},
    failures=(jobs.FailedAttempt("ValueError: boom", "Traceback ..."),),
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
)  # fmt: skip
COUNTS = jobs.Counts(
    waiting=1, active=2, delayed=3, completed=4, failed=5, dead=6, cancelled=7, backlogged=8,
    expired=9, published=10, promoted=11, fenced=12, lost=13, replayed=14, purged=15,
)  # fmt: skip
ENDPOINT = webhooks.Endpoint(
    id="ep_1", url="https://hooks.example/x", secret="whsec_c2VjcmV0", description="crm",
    created_ms=1, disabled="410 Gone", disabled_ms=2,
)  # fmt: skip
SNAPSHOT = metrics.Snapshot(
    processed=1, succeeded=2, failed=3, retried=4, dead=5, rate_limited=6, expired=7,
    batches=8, avg_ms=9.5, p95_ms=10.0, last_minute=11, last_ms=12,
)  # fmt: skip

SCHEDULE = repeats.Schedule(
    name="daily", workspace="acme", payload=msgspec.Raw(msgspec.msgpack.encode({"n": 1})),
    cron="0 9 * * *", zone="Europe/Berlin", anchor_ms=5, start_ms=6, end_ms=7, limit=8,
    last_ms=9, paused=True, resumed_ms=10,
)  # fmt: skip

DEFERRAL = ratelimit.Deferral(25, 1742638530123, 75, "global")
HISTORY = [
    ratelimit.DeferralEvent(1742638530123, 75, 25, "global", 50.0),
    ratelimit.DeferralEvent(1742638529001, 12, 2, "workspace", 0.5),
]

# The JSON each route has always answered with (keys in order).
SHOWN: list[tuple[Any, bytes]] = [
    (
        views.job_view(RECORD),
        b'{"id":"j1","function":"tasks","workspace":"acme","state":"completed","queued_ms":1,'
        b'"finished_ms":2,"started_ms":1,"ran_ms":1,"due_ms":3,"attempts":4,"error":"boom","key":"k","tags":["a","b"],'
        b'"result":{"ok":[1]},"consumer":"w1","deliveries":5,"priority":"high",'
        b'"data":{"to":"+15550100"},'
        b'"failures":[{"error":"ValueError: boom","traceback":"Traceback ..."}],'
        b'"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}',
    ),
    (
        views.counts_view(COUNTS),
        b'{"waiting":1,"active":2,"delayed":3,"completed":4,"failed":5,"dead":6,"cancelled":7,'
        b'"backlogged":8,"expired":9,"published":10,"promoted":11,"fenced":12,"lost":13,'
        b'"replayed":14,"purged":15}',
    ),
    (
        views.deferral_view(ratelimit.Deferral(3, 1700000000000, 7, "global")),
        b'{"count":3,"last_ms":1700000000000,"asked":7,"limit":"global"}',
    ),
    (
        views.snapshot_view(SNAPSHOT),
        b'{"processed":1,"succeeded":2,"failed":3,"retried":4,"dead":5,"rate_limited":6,'
        b'"expired":7,"batches":8,"avg_ms":9.5,"p95_ms":10.0,"last_minute":11,"last_ms":12}',
    ),
    (
        views.endpoint_view(ENDPOINT),
        b'{"id":"ep_1","url":"https://hooks.example/x","description":"crm","created_ms":1,'
        b'"disabled":"410 Gone","disabled_ms":2}',
    ),
    (
        views.created_view(ENDPOINT),
        b'{"id":"ep_1","url":"https://hooks.example/x","description":"crm","created_ms":1,'
        b'"disabled":"410 Gone","disabled_ms":2,"secret":"whsec_c2VjcmV0"}',
    ),
    (
        views.schedule_view("tasks", SCHEDULE, [1798790400000]),
        b'{"function":"tasks","name":"daily","workspace":"acme","data":{"n":1},'
        b'"cron":"0 9 * * *","zone":"Europe/Berlin","every_ms":0,"start_ms":6,"end_ms":7,'
        b'"limit":8,"last_ms":9,"paused":true,"created_ms":5,'
        b'"next_runs":[{"at_ms":1798790400000,"at":"2027-01-01T09:00:00+01:00"}]}',
    ),
    (
        views.tag_progress_view(
            "campaign:spring",
            "acme",
            {"sms.send": tagged.TagCounts(1, 2, 3), "email.send": tagged.TagCounts(4, 0, 0)},
        ),
        b'{"tag":"campaign:spring","workspace":"acme","functions":{'
        b'"sms.send":{"delayed":1,"waiting":2,"active":3},'
        b'"email.send":{"delayed":4,"waiting":0,"active":0}},'
        b'"total":{"delayed":5,"waiting":2,"active":3}}',
    ),
    (
        views.worker_view(consumers.Consumer("host-7-a1b2c3", 2, 1500)),
        b'{"name":"host-7-a1b2c3","pending":2,"idle_ms":1500}',
    ),
    (
        views.minute_view(metrics.Minute(1742638500000, 42, 3)),
        b'{"at_ms":1742638500000,"processed":42,"failed":3}',
    ),
    # The BullMQ service's shapes (the examples), for teams moving over.
    (
        views.channel_view(
            msgspec.structs.replace(
                SNAPSHOT,
                processed=1250,
                succeeded=1247,
                batches=25,
                avg_ms=120.0,
                last_minute=2520,
                rate_limited=0,
                last_ms=1742638530123,
            )
        ),
        b'{"totalProcessed":1250,"batchesProcessed":25,"successRate":99.8,'
        b'"avgProcessingTime":120.0,"throughput":42.0,"rateExceededCount":0,'
        b'"lastProcessedTime":"2025-03-22T10:15:30.123Z"}',
    ),
    (
        views.rate_limit_view(DEFERRAL, HISTORY),
        b'{"count":25,"lastExceeded":"2025-03-22T10:15:30.123Z","details":['
        b'{"timestamp":"2025-03-22T10:15:30.123Z","batchSize":75,'
        b'"errorMessage":"Rate limit exceeded: 50 per second"},'
        b'{"timestamp":"2025-03-22T10:15:29.001Z","batchSize":12,'
        b'"errorMessage":"Workspace rate limit exceeded: 0.5 per second"}]}',
    ),
    (views.rate_limit_view(None, []), b'{"count":0,"lastExceeded":null,"details":[]}'),
    (
        views.rate_summary_view(DEFERRAL),
        b'{"count":25,"lastExceeded":"2025-03-22T10:15:30.123Z"}',
    ),
]


@pytest.mark.parametrize(("view", "json"), SHOWN, ids=[type(v).__name__ for v, _ in SHOWN])
def test_each_view_shows_what_the_api_always_has(view: Any, json: bytes) -> None:
    assert msgspec.json.encode(view) == json


def test_a_job_with_defaults_shows_every_field() -> None:
    bare = jobs.JobRecord(id="j", function="f", workspace="w", state="delayed")
    shown = msgspec.json.decode(msgspec.json.encode(views.job_view(bare)))
    assert list(shown) == list(views.JobRecord.__struct_fields__)


def test_a_schedule_stored_with_an_unknown_zone_shows_its_runs_in_utc() -> None:
    # Interval schedules' zones were not checked before start and end came.
    old = msgspec.structs.replace(SCHEDULE, cron="", every_ms=60_000, zone="Nowhere/Land")
    shown = views.schedule_view("tasks", old, [1798790400000])
    assert shown.next_runs[0].at == "2027-01-01T08:00:00+00:00"
