"""/v1/webhooks/endpoints: a workspace's endpoints created (the secret shown once),
listed and deleted, each key within its own workspaces."""

from __future__ import annotations

import base64

from sluice.runtime import Webhooks
from sluice.runtime.client.webhooks import MAX_ENDPOINTS
from sluice.streams.connection import Redis
from tests.ingress.conftest import Api

PATH = "/v1/webhooks/endpoints"


async def test_an_endpoint_is_created_with_a_secret_shown_once_then_listed_and_deleted(
    api: Api, redis: Redis
) -> None:
    answer = await api.post(
        PATH, {"url": "https://hooks.acme.example/sluice", "description": "crm"}
    )
    assert answer.status == 201
    created = await answer.json()
    assert created["url"] == "https://hooks.acme.example/sluice"
    assert created["description"] == "crm"
    assert created["id"].startswith("ep_")
    assert (created["disabled"], created["disabled_ms"]) == ("", 0)
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 24
    # What webhook.deliver reads: the same endpoint and secret.
    (stored,) = await Webhooks(redis).list("acme")
    assert (stored.id, stored.secret) == (created["id"], created["secret"])

    listing = await api.http.get(PATH, headers=api.auth("acme"))
    assert listing.status == 200
    (shown,) = (await listing.json())["endpoints"]
    assert "secret" not in shown
    assert shown == {k: v for k, v in created.items() if k != "secret"}

    deleted = await api.http.delete(f"{PATH}/{created['id']}", headers=api.auth("acme"))
    assert deleted.status == 204
    again = await api.http.delete(f"{PATH}/{created['id']}", headers=api.auth("acme"))
    assert again.status == 404
    assert await Webhooks(redis).list("acme") == []


async def test_another_workspaces_key_neither_sees_nor_deletes_an_endpoint(api: Api) -> None:
    created = await (await api.post(PATH, {"url": "https://hooks.acme.example/x"})).json()
    other = api.auth("other")
    listing = await api.http.get(PATH, headers=other)
    assert (await listing.json())["endpoints"] == []
    deleted = await api.http.delete(f"{PATH}/{created['id']}", headers=other)
    assert deleted.status == 404
    named = await api.http.get(f"{PATH}?workspace=acme", headers=other)
    assert named.status == 403
    # An admin key names the workspace.
    admin = api.auth("admin")
    assert (await api.http.get(PATH, headers=admin)).status == 422
    listed = await api.http.get(f"{PATH}?workspace=acme", headers=admin)
    assert [e["id"] for e in (await listed.json())["endpoints"]] == [created["id"]]
    mine = await api.http.get(PATH, headers=api.auth("acme"))
    assert [e["id"] for e in (await mine.json())["endpoints"]] == [created["id"]]


async def test_bad_urls_and_too_many_endpoints_are_4xx(api: Api) -> None:
    for body in (
        {"url": "ftp://hooks.example/x"},
        {"url": "https://"},
        {"url": "https://user:pw@hooks.example/x"},
        {"url": "https://hooks.example/" + "x" * 2048},
        {"url": "https://hooks.example/x", "secret": "mine"},
        {},
    ):
        answer = await api.post(PATH, body)
        assert answer.status == 422, body
    for n in range(MAX_ENDPOINTS):
        assert (await api.post(PATH, {"url": f"https://hooks.example/{n}"})).status == 201
    full = await api.post(PATH, {"url": "https://hooks.example/one-more"})
    assert full.status == 409
    assert "20 webhook endpoints" in (await full.json())["detail"]


async def test_disabling_an_endpoint_removed_meanwhile_does_not_bring_it_back(
    redis: Redis,
) -> None:
    hooks = Webhooks(redis)
    endpoint = await hooks.add("acme", "https://hooks.example/x")
    assert await hooks.remove("acme", endpoint.id)
    assert not await hooks.disable("acme", endpoint.id, "410 Gone")
    assert await hooks.list("acme") == []
