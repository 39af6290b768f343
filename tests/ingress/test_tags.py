"""GET /v1/tags/{tag}/counts: a tag's live jobs by function and state, in one
workspace (a campaign's progress)."""

from __future__ import annotations

from typing import Any

from tests.ingress.conftest import Api

SMS = {"to": "+15550100", "body": "Spring sale!"}


async def publish(api: Api, topic: str, workspace: str, data: Any, **more: Any) -> None:
    answer = await api.post(f"/v1/events/{topic}", {"workspace": workspace, "data": data, **more},
                            who=workspace)  # fmt: skip
    assert answer.status == 202, await answer.text()


async def counts(api: Api, tag: str, who: str, **query: str) -> tuple[int, Any]:
    answer = await api.http.get(f"/v1/tags/{tag}/counts", params=query, headers=api.auth(who))
    return answer.status, await answer.json()


async def test_a_tags_live_jobs_are_counted_by_function_and_state_in_one_workspace(
    api: Api,
) -> None:
    spring = ["campaign:spring"]
    await publish(api, "tasks", "acme", {"n": 1}, tags=spring)
    await publish(api, "tasks", "acme", {"n": 2}, tags=spring, delay_ms=60_000)
    for _ in range(2):
        await publish(api, "sms.send", "acme", SMS, tags=spring, delay_ms=60_000)
    await publish(api, "sms.send", "acme", SMS, tags=["campaign:autumn"], delay_ms=60_000)
    await publish(api, "sms.send", "other", SMS, tags=spring, delay_ms=60_000)

    status, body = await counts(api, "campaign:spring", "acme")
    assert status == 200, body
    assert body == {
        "tag": "campaign:spring",
        "workspace": "acme",
        "functions": {
            "tasks": {"delayed": 1, "waiting": 1, "active": 0},
            "sms.send": {"delayed": 2, "waiting": 0, "active": 0},
        },
        "total": {"delayed": 3, "waiting": 1, "active": 0},
    }
    # Another workspace's jobs of the same tag are its own; an admin key names it.
    status, body = await counts(api, "campaign:spring", "admin", workspace="other")
    assert (status, body["functions"]) == (200, {"sms.send": {"delayed": 1, "waiting": 0,
                                                              "active": 0}})  # fmt: skip
    status, body = await counts(api, "campaign:none", "acme")
    assert (status, body["functions"], body["total"]["delayed"]) == (200, {}, 0)


async def test_the_workspace_is_the_keys_or_one_it_may_use(api: Api) -> None:
    status, problem = await counts(api, "campaign:spring", "acme", workspace="other")
    assert status == 403, problem
    status, problem = await counts(api, "campaign:spring", "admin")
    assert status == 422, problem
    assert "workspace" in problem["detail"]
    status, problem = await counts(api, "a b", "acme")
    assert status == 422, problem
    assert "tag" in problem["detail"]
