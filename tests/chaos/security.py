"""What the battery's security scenarios share: their figures, the keys file of an
ingress with one key of each kind, redis-servers that ask for credentials or
TLS, and the scan for secrets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import redis

from sluice.runtime.ingress.auth import ApiKey, new_key
from tests.redis_server import RedisServer


class Tally(msgspec.Struct, frozen=True):
    """A security scenario's figures: counts by name, in the order given."""

    scenario: str
    counts: dict[str, int]

    def line(self) -> str:
        counts = (f"{name}={value}" for name, value in self.counts.items())
        return " ".join([f"scenario={self.scenario}", *counts])


class Keys:
    """API keys as the ingress is configured with them: `admin`, the workspace keys
    `acme` (tenant A) and `other` (tenant B), and `gone`, an acme key that `revoke`
    takes out of the keys file."""

    WHO: ClassVar[dict[str, tuple[str, ...]]] = {
        "admin": (),
        "acme": ("acme",),
        "other": ("other",),
        "gone": ("acme",),
    }

    def __init__(self, path: Path) -> None:
        self.path = path
        self.plain: dict[str, str] = {}
        self.stored: dict[str, ApiKey] = {}
        for who, workspaces in self.WHO.items():
            self.plain[who], self.stored[who] = new_key(who, workspaces, admin=not workspaces)
        self._write()

    def _write(self) -> None:
        self.path.write_bytes(msgspec.json.encode(list(self.stored.values())))

    def revoke(self, who: str) -> None:
        del self.stored[who]
        self._write()

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plain[who]}"}


class GuardedServer(RedisServer):
    """A redis-server that asks for credentials (requirepass, an ACL file) or speaks
    TLS only: `client` are the options its readiness ping needs (redis-py's)."""

    def __init__(
        self, directory: Path, *, client: dict[str, Any], options: tuple[str, ...] = ()
    ) -> None:
        super().__init__(directory, options=options)
        self.client = client

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        ping = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                           **self.client)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if ping.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not start")
                time.sleep(0.01)  # polling a process just spawned; no event to await
        finally:
            ping.close()


def pieces(secret: str, size: int = 12) -> set[str]:
    """Every `size`-character piece of `secret`: a log showing part of a key leaks
    enough of it to matter."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets `text` holds a piece of."""
    return [name for name, secret in secrets.items() if any(p in text for p in pieces(secret))]
