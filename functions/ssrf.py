"""The SSRF guard of `webhook.deliver`: a workspace names the URLs Sluice POSTs to,
so without it a tenant could make the worker reach the deployment's own network
(Redis, an admin port, the cloud's metadata service and its credentials).

`check` resolves the URL's host once and refuses it unless every address is a
public one: loopback, private, link-local, multicast, unspecified, reserved and
the clouds' metadata addresses are refused, unless the deployment lists them
(`SLUICE_WEBHOOK_ALLOW`: networks, or host names trusted whatever they resolve
to). The connection then goes to the checked addresses only (`Pinned`, aiohttp's
resolver for the session): no second lookup, so a name that answers a public
address to the check and a private one to the connection (DNS rebinding) gets
nowhere. The URL's host still goes in the Host header and the TLS server name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from sluice.runtime import WebhookSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# AWS, GCP, Azure, OpenStack (169.254.169.254) and AWS's IPv6 one: named in the
# refusal, as the address an attacker is most likely after.
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class Refused(Exception):
    """The URL's host is, or resolves to, an address endpoints may not be on."""


class Unresolved(Exception):
    """The URL's host did not resolve (now: a DNS failure may pass)."""


class Target:
    """A URL checked by the guard: its host and the addresses a connection may use."""

    __slots__ = ("addresses", "host", "port")

    def __init__(self, host: str, port: int, addresses: tuple[str, ...]) -> None:
        self.host = host
        self.port = port
        self.addresses = addresses


def refusal(address: IPAddress) -> str | None:
    """Why an endpoint may not be on `address`, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 is 127.0.0.1 to the kernel.
        return refusal(address.ipv4_mapped)
    if address in METADATA:
        return "a cloud metadata address"
    kinds = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        # Shared (100.64/10, carrier NAT), documentation, benchmarking, ...
        (not address.is_global, "not a public address"),
    )
    return next((why for bad, why in kinds if bad), None)


async def check(url: str, settings: WebhookSettings) -> Target:
    """Resolve `url`'s host once and check every address; raise `Refused` if one is
    not allowed, `Unresolved` if there is none."""
    parsed = yarl.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise Refused(f"{url!r} is not an http or https URL")
    host = parsed.host.rstrip(".").lower()
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    networks, hosts = settings.allowed
    addresses = await _resolve(host, port)
    if host not in hosts:
        for address in addresses:
            why = refusal(address)
            if why and not any(address in network for network in networks):
                shown = host if host == str(address) else f"{host} ({address})"
                raise Refused(f"{shown} is {why}; SLUICE_WEBHOOK_ALLOW can allow it")
    return Target(host, port, tuple(str(address) for address in addresses))


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"{host} does not resolve: {exc}") from None
    # Each address once (getaddrinfo repeats them per socket type); a scope id dropped.
    found = list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).partition("%")[0]) for i in infos))
    if not found:
        raise Unresolved(f"{host} has no address")
    return found


class Pinned(AbstractResolver):
    """The session's resolver: the checked target's host resolves to its checked
    addresses, and any other host (a redirect, were one followed) to nothing."""

    def __init__(self, target: Target) -> None:
        self.target = target

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".").lower() != self.target.host:
            raise OSError(f"{host} was not checked by the SSRF guard")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port or self.target.port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.target.addresses
        ]

    async def close(self) -> None:
        """Nothing to release: no lookups are made."""
