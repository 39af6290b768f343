"""One settings struct for reaching Redis, and the one factory for clients."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any, cast

import hiredis
import msgspec
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio import connection as aioconnection
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from sluice.streams.errors import ConfigurationError

# A client of one server or of a Redis Cluster: the data layer's calls are the same
# (every script and multi-key call keeps to one hash-tagged slot).
Redis = aioredis.Redis | RedisCluster

# `redis+cluster://host:port` (or `rediss+cluster://`) names any node of a cluster.
CLUSTER_SUFFIX = "+cluster"


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach Redis. Credentials may sit in the URL or in their own fields."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 2.0
    # One reply waits at most this long. Blocking reads use a shorter BLOCK,
    # so a silent server is noticed within this bound, never hangs a process.
    socket_timeout_s: float = 5.0
    retries: int = 3
    # A whole call (retries, reconnects and backoff included) waits at most this
    # long, a blocking read its BLOCK on top; None: the socket timeout. Without it
    # a silent server held each call (1 + retries) socket timeouts.
    call_timeout_s: float | None = None
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0
    max_connections: int = 64
    # A Redis Cluster (as a `+cluster` URL scheme says too): the URL names any node.
    cluster: bool = False
    # PEM certificates to trust for a rediss:// server besides the system's: a
    # private CA's. A server no trusted CA signed is refused, never read in plain text.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme
        if scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
            raise ConfigurationError(
                "Redis URL must start with redis://, rediss://, unix:// or (a cluster) "
                f"redis+cluster:// or rediss+cluster://, got {self.redacted_url()!r}"
            )
        if self.is_cluster():
            if scheme == "unix":
                raise ConfigurationError("a Redis Cluster is reached over TCP, not unix://")
            db = aioconnection.parse_url(self._plain_url()).get("db", 0)
            if db:
                raise ConfigurationError(
                    f"a Redis Cluster has only database 0, but the URL names {db} "
                    f"({self.redacted_url()!r})"
                )
        if self.connect_timeout_s <= 0 or self.socket_timeout_s <= 0:
            raise ConfigurationError("Redis timeouts must be positive")
        if self.retries < 0:
            raise ConfigurationError("Redis retries must be 0 or more")
        if self.call_timeout_s is not None and self.call_timeout_s <= 0:
            raise ConfigurationError("the Redis call timeout must be positive")
        if self.ca_file and not scheme.startswith("rediss"):
            raise ConfigurationError(
                "SLUICE_REDIS_CA_FILE is for TLS: the Redis URL must start with rediss:// "
                f"(or rediss+cluster://), got {self.redacted_url()!r}"
            )

    def is_cluster(self) -> bool:
        return self.cluster or urllib.parse.urlsplit(self.url).scheme.endswith(CLUSTER_SUFFIX)

    def _plain_url(self) -> str:
        """The URL in a scheme redis-py parses (without `+cluster`)."""
        scheme, mark, rest = self.url.partition("://")
        return scheme.removesuffix(CLUSTER_SUFFIX) + mark + rest

    def call_timeout(self) -> float:
        """The longest any one call waits for Redis, beyond a blocking read's BLOCK."""
        return self.socket_timeout_s if self.call_timeout_s is None else self.call_timeout_s

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


def is_cluster(client: Redis) -> bool:
    """Whether `client` talks to a Redis Cluster (whose keys are laid out to spread)."""
    return isinstance(client, RedisCluster)


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
    if settings.is_cluster():
        return _connect_cluster(settings, retry)
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        **aioconnection.parse_url(settings.url),
    }
    plain: type = options.get("connection_class", aioredis.Connection)
    options["connection_class"] = _FAST_PACKING[plain]
    if settings.ca_file:  # a TLS URL (RedisSettings checks): an SSLConnection's option
        options["ssl_ca_certs"] = settings.ca_file
    # Blocking: a call finding every connection in use waits for one (within its
    # call timeout) rather than fail. redis-py's plain asyncio pool raises
    # MaxConnectionsError at once, so a listing page reading its 100 jobs side by
    # side, or a burst of requests, was answered 503 with Redis idle.
    pool = aioredis.BlockingConnectionPool(
        timeout=settings.call_timeout(),
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.socket_timeout_s,
        retry=retry,
        max_connections=settings.max_connections,
        # RESP3: streams.consume reads the XREADGROUP reply in its map shape.
        protocol=3,
        **options,
    )
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    client = cast(_Bounded, _Bounded.from_pool(pool))
    client.call_timeout_s = settings.call_timeout()
    # XREADGROUP replies reach streams.consume as the server sent them: redis-py
    # would build a dict per entry, which showed in a single-job worker's time
    # (bench profile) and is thrown away at once.
    client.set_response_callback("XREADGROUP", _as_sent)
    return client


def _connect_cluster(settings: RedisSettings, retry: Retry) -> RedisCluster:
    """A cluster client with the single server's retries, timeouts, RESP3, packing and
    reply shapes. It learns the other nodes from the one the URL names when first used,
    and follows MOVED and ASK replies by itself."""
    options: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        **aioconnection.parse_url(settings._plain_url()),
    }
    options.pop("db", None)  # checked to be 0 in RedisSettings
    plain: type = options.pop("connection_class", aioredis.Connection)
    client = _BoundedCluster(
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.socket_timeout_s,
        retry=retry,
        max_connections=settings.max_connections,
        protocol=3,
        ssl=plain is aioredis.SSLConnection,
        ssl_ca_certs=settings.ca_file,
        **options,
    )
    client.call_timeout_s = settings.call_timeout()
    # The nodes found later are built from these connection options, the seed already.
    client.connection_kwargs["connection_class"] = _FAST_PACKING[plain]
    for node in client.startup_nodes:
        node.connection_class = _FAST_PACKING[plain]
    client.set_response_callback("XREADGROUP", _as_sent)
    return client


def _as_sent(response: object, **options: object) -> object:
    return response


class _Bounded(aioredis.Redis):
    """A client whose every call ends within `call_timeout_s` (a blocking read's
    BLOCK on top), however many retries redis-py's Retry has left.

    A call cut short disconnects its connection (redis-py drops a connection whose
    send or read is cancelled), so no late reply is read as the next call's. A
    script cut short may still run in Redis: every Sluice script is idempotent
    under a retry (see `connect`), and its caller sees `RedisUnavailable`.
    """

    call_timeout_s = 5.0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        # Inline rather than a shared context manager: this runs for every command.
        limit = self.call_timeout_s + _blocking_s(args)
        try:
            async with asyncio.timeout(limit):
                return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except TimeoutError:
            raise _late(limit) from None

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        pipe = _BoundedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.call_timeout_s = self.call_timeout_s
        return pipe


class _BoundedPipeline(aioredis.client.Pipeline):
    """A pipeline sent and answered within `call_timeout_s`, like `_Bounded`'s calls
    (a blocking read in it its BLOCK on top: streams.consume.read_unless_paused)."""

    call_timeout_s = 5.0

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        limit = self.call_timeout_s + max(
            (_blocking_s(c[0]) for c in self.command_stack), default=0
        )
        try:
            async with asyncio.timeout(limit):
                return await super().execute(raise_on_error)
        except TimeoutError:
            raise _late(limit) from None


class _BoundedCluster(RedisCluster):
    """A cluster client whose every call ends within `call_timeout_s`, like `_Bounded`'s
    (redirections and re-reads of the cluster's layout included)."""

    call_timeout_s = 5.0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        limit = self.call_timeout_s + _blocking_s(args)
        try:
            async with asyncio.timeout(limit):
                # Learn the layout first (a no-op once known): redis-py 8.1 routes a
                # command issued before then, or after an error made it re-learn, to
                # a random node, and after 5 MOVED replies closes every connection,
                # the other tasks' calls in flight included.
                await self.initialize()
                return await super().execute_command(*args, **options)
        except TimeoutError:
            raise _late(limit) from None

    async def _determine_slot(self, command: Any, *args: Any) -> int:
        # redis-py asks a node where the keys of a command whose keys move are
        # (COMMAND GETKEYS, twice per call, to whichever node it asked first): two
        # more round trips per XREADGROUP, a worker's every read. Its keys follow
        # STREAMS, then as many ids.
        name = command.decode() if isinstance(command, bytes) else str(command)
        if name.upper() == "XREADGROUP":
            keys = _stream_keys(args[3:])  # after GROUP group consumer
            if len(keys) == 1:
                return self.keyslot(keys[0])
        return await super()._determine_slot(command, *args)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        # Abstract only in redis-py's annotations; its own pipeline() builds the same.
        pipe = _BoundedClusterPipeline(self, transaction)  # type: ignore[abstract]
        pipe.call_timeout_s = self.call_timeout_s
        return pipe


class _BoundedClusterPipeline(ClusterPipeline):
    call_timeout_s = 5.0

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            async with asyncio.timeout(self.call_timeout_s):
                await self.cluster_client.initialize()  # as in _BoundedCluster
                return await super().execute(raise_on_error, allow_redirections)
        except TimeoutError:
            raise _late(self.call_timeout_s) from None


def _stream_keys(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The keys of an XREADGROUP's options from COUNT on: those after STREAMS."""
    for i, arg in enumerate(args):
        if (arg.decode() if isinstance(arg, bytes) else str(arg)).upper() == "STREAMS":
            rest = args[i + 1 :]
            return rest[: len(rest) // 2]
    return ()


def _late(limit_s: float) -> redis.exceptions.TimeoutError:
    """redis-py's own timeout, which streams.errors turns into `RedisUnavailable`.
    (redis-py raises its TimeoutError, never the builtin one asyncio.timeout does.)"""
    return redis.exceptions.TimeoutError(f"no reply from Redis within {limit_s:g} s")


def _blocking_s(args: tuple[Any, ...]) -> float:
    """The BLOCK of an XREADGROUP, in seconds: the time Redis may take on purpose."""
    if args and args[0] in ("XREADGROUP", b"XREADGROUP"):
        for i, arg in enumerate(args):
            if arg in ("BLOCK", b"BLOCK"):
                return int(args[i + 1]) / 1000
    return 0.0


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
