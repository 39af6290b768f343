"""Repeatable jobs over HTTP: create or replace by name, list, read with the next
runs, pause, resume, delete (runtime.client.repeats).

A schedule belongs to one function and one workspace; names are per workspace.
A workspace key acts for its own workspaces; an admin key names the workspace
(`workspace` in the body or the query), as schedules belong to one.
"""

from __future__ import annotations

from aiohttp import web

from sluice.runtime.client.repeats import Repeats
from sluice.runtime.ingress.auth import ApiKey, scope
from sluice.runtime.ingress.bodies import ScheduleBody, Schedules
from sluice.runtime.ingress.problems import Problem, not_found
from sluice.runtime.ingress.routes import Keyed, Route, Services, query_int, read_json, reply
from sluice.runtime.ingress.views import Schedule, schedule_view
from sluice.streams import repeats as stored
from sluice.streams.keys import check_token

# Next runs a schedule is shown with: by default, and at most (?runs=).
RUNS = 5
MAX_RUNS = 100


def _workspace(key: ApiKey, named: str | None) -> str:
    workspace = scope(key, named)
    if workspace is None:
        raise Problem(422, "Invalid request", "give workspace: a schedule belongs to one")
    return workspace


def _name(request: web.Request) -> str:
    return check_token("schedule name", request.match_info["name"])


def _shown(function: str, schedule: stored.Schedule, runs: int) -> Schedule:
    return schedule_view(function, schedule, Repeats.next_runs(schedule, runs))


async def put_schedule(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function, name = request.match_info["function"], _name(request)
    body = await read_json(request, ScheduleBody)
    workspace = _workspace(key, body.workspace)
    schedule = await Repeats(services.redis, services.registry).add(
        function, name, workspace=workspace, data=body.data, cron=body.cron, zone=body.zone,
        every_ms=body.every_ms, start=body.start, end=body.end, limit=body.limit,
    )  # fmt: skip
    return reply(_shown(function, schedule, RUNS))


async def list_schedules(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    workspace = scope(key, request.query.get("workspace"))
    names = request.query.getall("function", []) or [fn.name for fn in services.registry]
    runs = query_int(request, "runs", 1, 0, MAX_RUNS)
    repeats = Repeats(services.redis, services.registry)
    found = [
        _shown(function, schedule, runs)
        for function in names
        for schedule in await repeats.read(function)
        if key.may(schedule.workspace) and workspace in (None, schedule.workspace)
    ]
    return reply(Schedules(found))


async def get_schedule(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function, name = request.match_info["function"], _name(request)
    workspace = _workspace(key, request.query.get("workspace"))
    runs = query_int(request, "runs", RUNS, 0, MAX_RUNS)
    schedule = await Repeats(services.redis, services.registry).get(
        function, name, workspace=workspace
    )
    if schedule is None:
        raise not_found(f"no schedule {name!r} of {function!r} in workspace {workspace!r}")
    return reply(_shown(function, schedule, runs))


async def pause_schedule(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    return await _set_paused(request, services, key, paused=True)


async def resume_schedule(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    return await _set_paused(request, services, key, paused=False)


async def _set_paused(
    request: web.Request, services: Services, key: ApiKey, *, paused: bool
) -> web.Response:
    function, name = request.match_info["function"], _name(request)
    workspace = _workspace(key, request.query.get("workspace"))
    repeats = Repeats(services.redis, services.registry)
    change = repeats.pause if paused else repeats.resume
    schedule = await change(function, name, workspace=workspace)
    if schedule is None:
        raise not_found(f"no schedule {name!r} of {function!r} in workspace {workspace!r}")
    return reply(_shown(function, schedule, RUNS))


async def delete_schedule(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function, name = request.match_info["function"], _name(request)
    workspace = _workspace(key, request.query.get("workspace"))
    if not await Repeats(services.redis, services.registry).remove(
        function, name, workspace=workspace
    ):
        raise not_found(f"no schedule {name!r} of {function!r} in workspace {workspace!r}")
    return web.Response(status=204)


_WORKSPACE = {"workspace": (str, "the schedule's workspace (default: the key's only one)")}
_RUNS = {"runs": (int, f"next runs shown, 0-{MAX_RUNS} (default {RUNS})")}
_ONE = "/v1/schedules/{function}/{name}"
_MISSING = {404: "No such function, or no such schedule in the workspace",
            422: "No workspace given for a key of several or an admin key"}  # fmt: skip

ROUTES = [
    Route("PUT", _ONE, Keyed(put_schedule),
          "Create or replace a repeatable job (its pending runs are cancelled)", "schedules",
          body=ScheduleBody, replies={200: Schedule},
          errors={404: "No such function",
                  422: "Invalid schedule (cron, zone, every_ms, start, end, limit) or data,"
                       " naming the field; no workspace given for a key of several"}),
    Route("GET", "/v1/schedules", Keyed(list_schedules),
          "The schedules of the key's workspaces (an admin key: all), each with its next run",
          "schedules", replies={200: Schedules},
          query={"function": (str, "only these functions (repeat; default: all)"),
                 "workspace": (str, "only this workspace's"),
                 "runs": (int, f"next runs shown per schedule, 0-{MAX_RUNS} (default 1)")},
          errors={404: "No such function", 422: "runs out of range"}),
    Route("GET", _ONE, Keyed(get_schedule), "A schedule with its next runs", "schedules",
          replies={200: Schedule}, query={**_WORKSPACE, **_RUNS},
          errors={**_MISSING, 422: _MISSING[422] + "; runs out of range"}),
    Route("POST", f"{_ONE}/pause", Keyed(pause_schedule),
          "Pause a schedule: no runs until resumed; its pending run is cancelled", "schedules",
          replies={200: Schedule}, query=_WORKSPACE, errors=_MISSING),
    Route("POST", f"{_ONE}/resume", Keyed(resume_schedule),
          "Resume a paused schedule from its next due time", "schedules",
          replies={200: Schedule}, query=_WORKSPACE, errors=_MISSING),
    Route("DELETE", _ONE, Keyed(delete_schedule),
          "Delete a schedule and cancel its pending run", "schedules",
          replies={204: None}, query=_WORKSPACE, errors=_MISSING),
]  # fmt: skip
