"""A workspace's webhook endpoints over HTTP: create (its secret shown once), list,
delete. `webhook.deliver` (functions/webhook.py) POSTs the workspace's events to them.

Workspace-scoped like every route: a key sees and changes only its workspaces'
endpoints, and another workspace's endpoint is answered 404, as one that does
not exist.
"""

from __future__ import annotations

from aiohttp import web

from sluice.runtime.client.webhooks import MAX_ENDPOINTS, Webhooks
from sluice.runtime.ingress.auth import ApiKey, scope
from sluice.runtime.ingress.bodies import NewEndpoint, WebhookEndpoints
from sluice.runtime.ingress.problems import Problem, not_found
from sluice.runtime.ingress.routes import Keyed, Route, Services, read_json, reply
from sluice.runtime.ingress.views import WebhookEndpointCreated, created_view, endpoint_view

PATH = "/v1/webhooks/endpoints"


def _workspace(request: web.Request, key: ApiKey) -> str:
    workspace = scope(key, request.query.get("workspace"))
    if workspace is None:
        raise Problem(422, "Invalid request", "give workspace: endpoints are a workspace's own")
    return workspace


async def create_endpoint(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    workspace = _workspace(request, key)
    body = await read_json(request, NewEndpoint)
    endpoint = await Webhooks(services.redis).add(workspace, body.url, body.description)
    return reply(created_view(endpoint), 201)


async def list_endpoints(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    found = await Webhooks(services.redis).list(_workspace(request, key))
    return reply(WebhookEndpoints([endpoint_view(endpoint) for endpoint in found]))


async def delete_endpoint(request: web.Request, services: Services, key: ApiKey) -> web.Response:
    endpoint_id = request.match_info["id"]
    if not await Webhooks(services.redis).remove(_workspace(request, key), endpoint_id):
        raise not_found(f"no webhook endpoint {endpoint_id!r}")
    return web.Response(status=204)


WORKSPACE = {"workspace": (str, "the endpoints' workspace (required for a key of several)")}

ROUTES = [
    Route(
        "POST",
        PATH,
        Keyed(create_endpoint),
        "Add a webhook endpoint; the answer holds its signing secret, shown only this once",
        "webhooks",
        body=NewEndpoint,
        replies={201: WebhookEndpointCreated},
        errors={409: f"The workspace has {MAX_ENDPOINTS} endpoints already, the most it may"},
        query=WORKSPACE,
    ),
    Route(
        "GET",
        PATH,
        Keyed(list_endpoints),
        "The workspace's webhook endpoints (without their secrets)",
        "webhooks",
        replies={200: WebhookEndpoints},
        query=WORKSPACE,
    ),
    Route(
        "DELETE",
        PATH + "/{id}",
        Keyed(delete_endpoint),
        "Delete a webhook endpoint: no more deliveries to it",
        "webhooks",
        replies={204: None},
        errors={404: "No such endpoint in the workspace"},
        query=WORKSPACE,
    ),
]
