"""What the Redis server is configured to do with our data, checked at start-up."""

from __future__ import annotations

from typing import Any

import msgspec
import redis.exceptions

from streams.connection import Redis
from streams.errors import wrap_unavailable


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


async def server_config(client: Redis) -> ServerConfig:
    with wrap_unavailable():
        info = await client.info("server")
        config: dict[Any, Any] = {}
        try:
            config.update(await client.config_get("maxmemory-policy"))
            config.update(await client.config_get("append*"))
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
