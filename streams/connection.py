"""One settings struct for reaching Redis, and the one factory for clients."""

from __future__ import annotations

import urllib.parse
from typing import Any

import hiredis
import msgspec
import redis.asyncio as aioredis
from redis.asyncio import connection as aioconnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from streams.errors import ConfigurationError

Redis = aioredis.Redis


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach Redis. Credentials may sit in the URL or in their own fields."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 2.0
    # Every command waits at most this long. Blocking reads use a shorter BLOCK,
    # so a silent server is noticed within this bound, never hangs a process.
    socket_timeout_s: float = 5.0
    retries: int = 3
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0
    max_connections: int = 64

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "Redis URL must start with redis://, rediss:// or unix://, "
                f"got {self.redacted_url()!r}"
            )
        if self.connect_timeout_s <= 0 or self.socket_timeout_s <= 0:
            raise ConfigurationError("Redis timeouts must be positive")
        if self.retries < 0:
            raise ConfigurationError("Redis retries must be 0 or more")

    def redacted_url(self) -> str:
        """The URL without its password, for logs: in the user part, or (as redis-py
        also reads it) a `password=` in the query."""
        password = urllib.parse.urlsplit(self.url).password
        base, mark, rest = self.url.partition("?")
        query, hash_mark, fragment = rest.partition("#")
        if password is not None:
            base = base.replace(f":{password}@", ":***@", 1)
        query = "&".join(
            f"{name}=***" if name.lower() == "password" and sep else f"{name}{sep}{value}"
            for name, sep, value in (p.partition("=") for p in query.split("&"))
        )
        return base + mark + query + hash_mark + fragment


def connect(settings: RedisSettings) -> Redis:
    """Build a client; it connects lazily, so this never blocks or fails on a down server.

    Retries with jittered exponential backoff cover blips within one command.
    Every Sluice script is idempotent under such a retry: a publish re-run finds
    its jobs already written, a settle re-run finds its entries already acknowledged.
    """
    retry = Retry(
        ExponentialWithJitterBackoff(cap=settings.backoff_cap_s, base=settings.backoff_base_s),
        settings.retries,
    )
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        **aioconnection.parse_url(settings.url),
    }
    plain: type = options.get("connection_class", aioredis.Connection)
    options["connection_class"] = _FAST_PACKING[plain]
    pool = aioredis.ConnectionPool(
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.socket_timeout_s,
        retry=retry,
        max_connections=settings.max_connections,
        # RESP3: streams.consume reads the XREADGROUP reply in its map shape.
        protocol=3,
        **options,
    )
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    client = aioredis.Redis.from_pool(pool)
    # XREADGROUP replies reach streams.consume as the server sent them: redis-py
    # would build a dict per entry, which cost a tenth of a single-job worker's
    # time (bench profile) and is thrown away at once.
    client.set_response_callback("XREADGROUP", _as_sent)
    return client


def _as_sent(response: object, **options: object) -> object:
    return response


class _HiredisPacking:
    """Pack commands with hiredis's C packer.

    redis-py's asyncio connections pack every argument in Python; with one job
    key per job in a settle call, that packing cost more than the script itself
    (bench profile). The sync client already packs with hiredis when present.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        # Like redis-py: a command name such as "SCRIPT LOAD" is sent as two words.
        name = args[0]
        if " " in (name if isinstance(name, str) else name.decode()):
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]


class _Tcp(_HiredisPacking, aioredis.Connection):
    pass


class _Tls(_HiredisPacking, aioredis.SSLConnection):
    pass


class _Unix(_HiredisPacking, aioredis.UnixDomainSocketConnection):
    pass


_FAST_PACKING: dict[type, type] = {
    aioredis.Connection: _Tcp,
    aioredis.SSLConnection: _Tls,
    aioredis.UnixDomainSocketConnection: _Unix,
}
