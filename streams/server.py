"""What the Redis server is configured to do with our data, checked at start-up;
on a cluster, every primary (each keeps its own settings, and holds its own jobs)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable


class ServerConfig(msgspec.Struct, frozen=True):
    version: str
    # Empty when CONFIG is disabled (many managed services rename it).
    maxmemory_policy: str
    appendonly: str
    appendfsync: str

    def risks(self) -> list[str]:
        """Settings that lose acknowledged jobs, in words for a log line."""
        found = []
        if self.maxmemory_policy and self.maxmemory_policy != "noeviction":
            found.append(
                f"maxmemory-policy is {self.maxmemory_policy}: Redis may evict queued jobs "
                "under memory pressure; set noeviction"
            )
        if self.appendonly == "no":
            found.append("appendonly is no: a Redis restart loses every job since the last save")
        return found


async def primaries(client: Redis) -> list[ClusterNode] | None:
    """A cluster's primaries as the client knows them now; None for a single server."""
    if not isinstance(client, RedisCluster):
        return None
    with wrap_unavailable():
        await client.initialize()
    return client.get_primaries()


async def ping_primaries(client: Redis) -> None:
    """Return once the server, or every primary of a cluster, answered a PING: a
    cluster with one primary down cannot take or hand out that primary's jobs."""
    nodes = await primaries(client)
    with wrap_unavailable():
        if nodes is None:
            await client.ping()
        else:
            await asyncio.gather(*(client.ping(target_nodes=node) for node in nodes))


async def server_configs(client: Redis) -> dict[str, ServerConfig]:
    """Each primary's configuration by its address ("host:port"; "" for a single server)."""
    nodes = await primaries(client)
    if nodes is None:
        return {"": await server_config(client)}
    return {node.name: await server_config(client, node) for node in nodes}


async def server_config(client: Redis, node: ClusterNode | None = None) -> ServerConfig:
    """The configuration of the server, or of `node` of a cluster."""
    target: dict[str, Any] = {} if node is None else {"target_nodes": node}
    with wrap_unavailable():
        info = await client.info("server", **target)
        config: dict[Any, Any] = {}
        try:
            config.update(await client.config_get("maxmemory-policy", **target))
            config.update(await client.config_get("append*", **target))
        except redis.exceptions.ResponseError:
            pass  # CONFIG disabled: report what is known

    def value(name: str) -> str:
        raw = config.get(name.encode(), config.get(name, b""))
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    return ServerConfig(
        version=str(info.get("redis_version", "")),
        maxmemory_policy=value("maxmemory-policy"),
        appendonly=value("appendonly"),
        appendfsync=value("appendfsync"),
    )
