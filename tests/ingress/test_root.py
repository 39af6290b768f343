"""The site's root leads a browser to the dashboard."""

from __future__ import annotations

from tests.ingress.conftest import Api


async def test_the_root_redirects_to_the_dashboard(api: Api) -> None:
    answer = await api.http.get("/", allow_redirects=False)
    assert answer.status in (302, 307)
    assert answer.headers["Location"] == "/admin"
