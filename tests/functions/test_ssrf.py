"""The SSRF guard (functions/ssrf.py): what it refuses, what the allow-list lets
through, and that the connection goes to the address it checked."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from functions.ssrf import Pinned, Refused, Target, Unresolved, check
from sluice.runtime import ConfigurationError, WebhookSettings
from sluice.runtime.settings import from_env

NONE = WebhookSettings()

REFUSED = [
    ("http://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://[::1]:8080/hook", "::1 is a loopback address"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://0.0.0.0/", "the unspecified address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://100.64.0.1/", "not a public address"),
    ("http://240.0.0.1/", "a reserved address"),
    ("http://localhost:9/hook", "localhost (127.0.0.1) is a loopback address"),
    ("https://LOCALHOST./hook", "localhost (127.0.0.1) is a loopback address"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED, ids=[url for url, _ in REFUSED])
async def test_private_loopback_link_local_and_metadata_addresses_are_refused(
    url: str, why: str
) -> None:
    with pytest.raises(Refused, match=why.replace("(", r"\(").replace(")", r"\)")):
        await check(url, NONE)


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1/hook", "127.0.0.1"),
        ("http://10.0.0.1/hook", "10.0.0.0/8"),
        ("http://169.254.169.254/", "169.254.169.254/32"),
        ("http://[::1]:8080/hook", "::1"),
        ("http://localhost:9/hook", "localhost"),
        ("http://localhost:9/hook", "127.0.0.0/8, ::1"),
    ],
)
async def test_each_is_allowed_when_listed(url: str, allow: str) -> None:
    target = await check(url, WebhookSettings(allow=allow))
    assert target.addresses


async def test_a_name_is_allowed_only_if_every_address_is() -> None:
    # localhost may resolve to ::1 as well as 127.0.0.1: one listed is not enough then.
    target = await check("http://localhost/", WebhookSettings(allow="127.0.0.0/8, ::1"))
    if len(target.addresses) > 1:
        with pytest.raises(Refused, match="::1"):
            await check("http://localhost/", WebhookSettings(allow="127.0.0.0/8"))


async def test_public_addresses_pass_and_other_urls_do_not() -> None:
    target = await check("https://93.184.215.14/hook", NONE)
    assert (target.host, target.port, target.addresses) == (
        "93.184.215.14",
        443,
        ("93.184.215.14",),
    )
    for url in ("ftp://93.184.215.14/", "file:///etc/passwd", "http:///nohost"):
        with pytest.raises(Refused, match="not an http or https URL"):
            await check(url, NONE)
    with pytest.raises(Unresolved, match="does not resolve"):
        await check("http://no-such-host.invalid/", NONE)


def test_the_allow_list_is_checked_at_start() -> None:
    settings = from_env({"SLUICE_WEBHOOK_ALLOW": "10.0.0.0/8, hooks.internal ,[::1]"})
    networks, hosts = settings.webhook.allowed
    assert [str(n) for n in networks] == ["10.0.0.0/8", "::1/128"]
    assert hosts == {"hooks.internal"}
    with pytest.raises(ConfigurationError, match="neither a network nor a host name"):
        from_env({"SLUICE_WEBHOOK_ALLOW": "10.0.0.0/8,not a host"})


async def test_the_connection_goes_to_the_checked_address_with_the_urls_host() -> None:
    # The name does not resolve at all: only the pinned address can be reached,
    # and the server still sees the URL's host.
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    target = Target("hooks.example.invalid", port, ("127.0.0.1",))
    try:
        connector = aiohttp.TCPConnector(resolver=Pinned(target))
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"http://hooks.example.invalid:{port}/hook"
            async with session.post(url, data=b"{}") as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.post(f"http://elsewhere.invalid:{port}/hook")
    finally:
        await runner.cleanup()
    assert seen == [f"hooks.example.invalid:{port}"]
