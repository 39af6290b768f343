"""Jobs over HTTP: look up, list, cancel, reschedule, count a tag's.

A workspace key sees only its workspaces' jobs: another workspace's job is
answered 404, exactly as a job that does not exist, so ids do not leak. Ids
are per workspace (streams.keys.given_id): each may use any id.
"""

from __future__ import annotations

from typing import Any, get_args

from aiohttp import web

from sluice.runtime.client.jobs import MAX_PAGE
from sluice.runtime.errors import JobNotFound, UnknownFunction
from sluice.runtime.ingress.auth import ApiKey, require_workspace, scope
from sluice.runtime.ingress.bodies import JobsPage, Reschedule
from sluice.runtime.ingress.problems import Problem, not_found
from sluice.runtime.ingress.routes import Keyed, Route, Services, query_int, read_json, reply
from sluice.runtime.ingress.views import (
    JobRecord,
    ListedState,
    TagProgress,
    job_view,
    tag_progress_view,
)
from sluice.streams import jobs as stored
from sluice.streams.errors import InvalidName
from sluice.streams.keys import check_token

STATES: dict[str, ListedState] = {state: state for state in get_args(ListedState)}


def _functions(services: Services, request: web.Request) -> list[str]:
    name = request.query.get("function")
    if name is None:
        return [fn.name for fn in services.registry]
    try:
        services.registry.select([name])
    except UnknownFunction:
        raise not_found(f"no function {name!r}") from None
    return [name]


async def _find(
    services: Services, request: web.Request, key: ApiKey, job_id: str
) -> stored.JobRecord:
    """The job, searched in the workspace named by `?workspace=`, or in the key's
    workspaces (for an admin key: any, which finds only a generated id, as an id
    its publisher gave is one of that workspace's own)."""
    named = request.query.get("workspace")
    scopes: list[str | None]
    if named is not None:
        require_workspace(key, check_token("workspace", named))
        scopes = [named]
    else:
        scopes = [None] if key.admin else list(key.workspaces)
    for function in _functions(services, request):
        for workspace in scopes:
            record = await services.jobs.get(function, job_id, workspace=workspace)
            if record is not None and key.may(record.workspace):
                return record
    hint = " (an id its publisher gave is found with ?workspace=)" if scopes == [None] else ""
    raise not_found(f"no job {job_id!r}{hint}")


async def get_job(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    return reply(job_view(await _find(services, request, key, request.match_info["id"])))


async def list_jobs(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    function = request.query.get("function")
    state = STATES.get(request.query.get("state", ""))
    if state is None:
        raise Problem(422, "Invalid request", f"give state ({', '.join(STATES)})")
    workspace = scope(key, request.query.get("workspace"))
    _functions(services, request)
    page = await services.jobs.page(
        function,
        state,
        workspace=workspace,
        cursor=request.query.get("cursor", ""),
        limit=query_int(request, "limit", 100, 1, MAX_PAGE),
    )
    return reply(JobsPage([job_view(job) for job in page.jobs], page.cursor))


async def cancel_job(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    record = await _find(services, request, key, request.match_info["id"])
    await services.jobs.cancel(record.function, record.id, workspace=record.workspace)
    return reply(job_view(await _again(services, record)))


async def reschedule_job(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    body = await read_json(request, Reschedule)
    record = await _find(services, request, key, request.match_info["id"])
    try:
        await services.jobs.reschedule(
            record.function,
            record.id,
            delay_ms=body.delay_ms,
            run_at=body.run_at,
            workspace=record.workspace,
        )
    except JobNotFound:
        raise not_found(f"no job {record.id!r}") from None
    return reply(job_view(await _again(services, record)))


async def _again(services: Services, record: stored.JobRecord) -> stored.JobRecord:
    """The job found before, as it is now: in its own workspace, as the same id may
    name a job in each of a key's workspaces."""
    now = await services.jobs.get(record.function, record.id, workspace=record.workspace)
    if now is None:  # dropped by retention meanwhile
        raise not_found(f"no job {record.id!r}")
    return now


async def tag_counts(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    tag = request.match_info["tag"]
    try:
        check_token("tag", tag)
    except InvalidName as exc:  # in the path, not the body: said as it is
        raise Problem(422, "Invalid request", str(exc)) from None
    workspace = scope(key, request.query.get("workspace"))
    if workspace is None:
        raise Problem(422, "Invalid request", "give workspace: a tag's jobs are counted in one")
    found = await services.jobs.tag_counts(tag, workspace=workspace)
    return reply(tag_progress_view(tag, workspace, found))


FUNCTION_QUERY: dict[str, tuple[Any, str]] = {
    "function": (str, "look in this function only (default: every function)"),
    "workspace": (
        str,
        "the job's workspace (default: the key's): ids are per workspace, so an admin"
        " key finds an id its publisher gave only with it",
    ),
}

ROUTES = [
    Route(
        "GET",
        "/v1/jobs/{id}",
        Keyed(get_job),
        "A job's state, attempts, due time, errors and result",
        "jobs",
        replies={200: JobRecord},
        query=FUNCTION_QUERY,
    ),
    Route(
        "GET",
        "/v1/jobs",
        Keyed(list_jobs),
        "A page of jobs in one state: a function's, or every function's newest first",
        "jobs",
        replies={200: JobsPage},
        query={
            "function": (str, "only this function's (default: every function's, newest first)"),
            "state": (ListedState, "the state (required)"),
            "workspace": (str, "only this workspace's (required for a key of several)"),
            "cursor": (str, "from the previous page"),
            "limit": (int, "most jobs in the page, 1-1000 (default 100)"),
        },
    ),
    Route(
        "DELETE",
        "/v1/jobs/{id}",
        Keyed(cancel_job),
        "Cancel a job that has not started (409 for a running or finished one)",
        "jobs",
        replies={200: JobRecord},
        errors={409: "The job is running or finished: it cannot be cancelled"},
        query=FUNCTION_QUERY,
    ),
    Route(
        "PATCH",
        "/v1/jobs/{id}",
        Keyed(reschedule_job),
        "Move a delayed job's due time (409 for any other job)",
        "jobs",
        body=Reschedule,
        replies={200: JobRecord},
        errors={409: "The job is not delayed: only a delayed job's due time moves"},
        query=FUNCTION_QUERY,
    ),
    Route(
        "GET",
        "/v1/tags/{tag}/counts",
        Keyed(tag_counts),
        "A tag's live jobs in a workspace by function and state (a campaign's progress)",
        "jobs",
        replies={200: TagProgress},
        query={"workspace": (str, "the jobs' workspace (required for a key of several)")},
    ),
]
