"""Queues, dead letters, metrics, rate limits and workers over HTTP.

Counts across workspaces, limits and resets need an admin key; a workspace key
reads and replays its own workspaces' dead letters and reads their metrics.
"""

from __future__ import annotations

from aiohttp import web

from sluice.runtime.client.workers import Workers
from sluice.runtime.errors import UnknownFunction
from sluice.runtime.ingress.auth import ApiKey, require_workspace, scope
from sluice.runtime.ingress.bodies import (
    DeadLetterList,
    DeadLetterView,
    FunctionMetrics,
    LimitsView,
    MetricsHistory,
    MetricsReset,
    Purge,
    Purged,
    Queue,
    Queues,
    RateLimit,
    Replay,
    Replayed,
    WorkerList,
)
from sluice.runtime.ingress.problems import not_found
from sluice.runtime.ingress.routes import Admin, Keyed, Route, Services, query_int, read_json, reply
from sluice.runtime.ingress.views import (
    counts_view,
    deferral_view,
    minute_view,
    snapshot_view,
    worker_view,
)
from sluice.streams.jobs import failed_attempts
from sluice.streams.keys import check_token, shown_id


def _function(services: Services, name: str) -> str:
    try:
        services.registry.select([name])
    except UnknownFunction:
        raise not_found(f"no function {name!r}") from None
    return name


async def queues(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    found = [
        Queue(
            fn.name,
            list(fn.topics),
            counts_view(await services.jobs.counts(fn.name)),
            await services.pauses.paused(fn.name),
        )
        for fn in services.registry
    ]
    return reply(Queues(found))


async def pause(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    await services.pauses.pause(_function(services, request.match_info["function"]))
    return web.Response(status=204)


async def resume(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    await services.pauses.resume(_function(services, request.match_info["function"]))
    return web.Response(status=204)


async def dead_letters(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function = _function(services, request.match_info["function"])
    workspace = scope(key, request.query.get("workspace"))
    letters = await services.dead.read(
        function, workspace=workspace, limit=query_int(request, "limit", 100, 1, 1000)
    )
    return reply(
        DeadLetterList(
            [
                DeadLetterView(
                    letter.entry_id,
                    shown_id(letter.envelope.id),
                    letter.envelope.workspace,
                    letter.reason,
                    list(letter.envelope.errors),
                    letter.envelope.attempt,
                    letter.envelope.created_ms,
                    [f.traceback for f in failed_attempts(letter.envelope)],
                )
                for letter in letters
            ]
        )
    )


async def replay(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function = _function(services, request.match_info["function"])
    body = await read_json(request, Replay)
    workspace = scope(key, body.workspace)
    count = await services.dead.replay(function, ids=body.ids, workspace=workspace)
    return reply(Replayed(count))


async def purge(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function = _function(services, request.match_info["function"])
    body = await read_json(request, Purge)
    workspace = scope(key, body.workspace)
    return reply(Purged(await services.dead.purge(function, ids=body.ids, workspace=workspace)))


def _names(services: Services, request: web.Request) -> list[str]:
    """The functions named by ?function= (each known), or every function."""
    named = request.query.getall("function", [])
    return [_function(services, n) for n in named] or [fn.name for fn in services.registry]


async def workers(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    read = Workers(services.redis, services.registry).read
    return reply(
        WorkerList({n: [worker_view(c) for c in await read(n)] for n in _names(services, request)})
    )


async def history(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    return reply(
        MetricsHistory(
            {
                n: [minute_view(m) for m in await services.metrics.history(n)]
                for n in _names(services, request)
            }
        )
    )


async def metrics(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    names = request.query.getall("function", []) or [fn.name for fn in services.registry]
    return reply(
        FunctionMetrics(
            {
                name: snapshot_view(await services.metrics.read(_function(services, name)))
                for name in names
            }
        )
    )


async def workspace_metrics(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    workspace = check_token("workspace", request.match_info["workspace"])
    require_workspace(key, workspace)
    names = request.query.getall("function", []) or [fn.name for fn in services.registry]
    return reply(
        FunctionMetrics(
            {
                name: snapshot_view(
                    await services.metrics.read(_function(services, name), workspace)
                )
                for name in names
            }
        )
    )


async def reset_metrics(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    body = await read_json(request, MetricsReset)
    names = (
        [_function(services, body.function)]
        if body.function
        else [fn.name for fn in services.registry]
    )
    for name in names:
        await services.metrics.reset(name, body.workspace)
    return web.Response(status=204)


async def limits(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    (fn,) = services.registry.select([_function(services, request.match_info["function"])])
    deferrals = await services.limits.deferrals(fn.name)
    shown = {workspace: deferral_view(d) for workspace, d in deferrals.items()}
    return reply(LimitsView(fn.name, fn.options.rate_per_s, fn.options.workspace_rate_per_s, shown))


async def set_global_limit(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function = _function(services, request.match_info["function"])
    body = await read_json(request, RateLimit)
    await services.limits.set_global(function, body.rate_per_s)
    return web.Response(status=204)


async def set_workspace_limit(
    request: web.Request, services: Services, key: ApiKey
) -> web.Response:
    function = _function(services, request.match_info["function"])
    workspace = check_token("workspace", request.match_info["workspace"])
    body = await read_json(request, RateLimit)
    await services.limits.set_workspace(function, workspace, body.rate_per_s)
    return web.Response(status=204)


_FUNCTIONS_QUERY = {"function": (str, "only these functions (repeat; default: all)")}
_WORKSPACE_QUERY = {"workspace": (str, "only this workspace's (required for a key of several)")}


ROUTES = [
    Route("GET", "/v1/queues", Admin(queues), "Job counts per function (admin)", "queues",
          replies={200: Queues}),
    Route("POST", "/v1/queues/{function}/pause", Admin(pause),
          "Pause a function: its workers start nothing until resumed (admin)", "queues",
          replies={204: None}),
    Route("POST", "/v1/queues/{function}/resume", Admin(resume),
          "Resume a paused function (admin)", "queues", replies={204: None}),
    Route("GET", "/v1/dead-letters/{function}", Keyed(dead_letters),
          "The oldest dead letters of a function", "dead letters",
          replies={200: DeadLetterList},
          query={**_WORKSPACE_QUERY, "limit": (int, "most letters, 1-1000 (default 100)")}),
    Route("POST", "/v1/dead-letters/{function}/replay", Keyed(replay),
          "Queue dead letters again, from attempt 1", "dead letters",
          body=Replay, replies={200: Replayed}),
    Route("POST", "/v1/dead-letters/{function}/purge", Keyed(purge),
          "Delete dead letters and their job records for good", "dead letters",
          body=Purge, replies={200: Purged}),
    Route("GET", "/v1/workers", Admin(workers),
          "The workers reading each function: jobs held and last read (admin)", "queues",
          replies={200: WorkerList}, query=_FUNCTIONS_QUERY),
    Route("GET", "/v1/metrics/history", Admin(history),
          "Jobs processed and failed per minute over the last hour, per function (admin)",
          "metrics", replies={200: MetricsHistory}, query=_FUNCTIONS_QUERY),
    Route("GET", "/v1/metrics", Admin(metrics), "Metrics per function (admin)",
          "metrics", replies={200: FunctionMetrics}, query=_FUNCTIONS_QUERY),
    Route("GET", "/v1/metrics/workspace/{workspace}", Keyed(workspace_metrics),
          "One workspace's metrics per function", "metrics",
          replies={200: FunctionMetrics}, query=_FUNCTIONS_QUERY),
    Route("POST", "/v1/metrics/reset", Admin(reset_metrics),
          "Clear a function's or a workspace's metrics and rate-limit deferrals (admin)", "metrics",
          body=MetricsReset, replies={204: None}),
    Route("GET", "/v1/limits/{function}", Admin(limits),
          "A function's declared rates and each workspace's deferrals (admin)", "limits",
          replies={200: LimitsView}),
    Route("PUT", "/v1/limits/{function}", Admin(set_global_limit),
          "Override the function's global rate (admin)", "limits",
          body=RateLimit, replies={204: None}),
    Route("PUT", "/v1/limits/{function}/workspace/{workspace}", Admin(set_workspace_limit),
          "Override one workspace's rate, its tier (admin)", "limits",
          body=RateLimit, replies={204: None}),
]  # fmt: skip
