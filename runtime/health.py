"""Whether this process can reach Redis, logged once per change, never per retry."""

from __future__ import annotations

import asyncio
import logging

from runtime.backoff import Backoff
from runtime.lifecycle import sleep_unless
from streams.connection import Redis
from streams.errors import RedisUnavailable
from streams.server import server_configs

log = logging.getLogger(__name__)


class RedisHealth:
    """Shared by every loop of a process; each reports what its last call saw."""

    __slots__ = ("available", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.available = True

    def down(self, error: BaseException) -> None:
        if self.available:
            self.available = False
            log.warning("redis unavailable at %s: %s; retrying with backoff", self.url, error)

    def up(self) -> None:
        if not self.available:
            self.available = True
            log.warning("redis available again at %s", self.url)


async def report_server(client: Redis, url: str, stop: asyncio.Event) -> None:
    """Log the server's (every primary's) durability settings once it answers; warn
    loudly on risky ones.

    Runs beside the hosts, so a Redis that is down at start delays only this report.
    """
    backoff = Backoff()
    while not stop.is_set():
        try:
            configs = await server_configs(client)
        except RedisUnavailable:
            await sleep_unless(stop, backoff.next_delay())
            continue
        for node, config in configs.items():
            # A cluster's primaries each by address: any one evicting loses its jobs.
            where = f"{url} (primary {node})" if node else url
            log.info(
                "redis %s at %s: maxmemory-policy=%s appendonly=%s appendfsync=%s",
                config.version,
                where,
                config.maxmemory_policy or "?",
                config.appendonly or "?",
                config.appendfsync or "?",
            )
            for risk in config.risks():
                log.warning("RISK OF LOSING JOBS: %s%s", f"primary {node}: " if node else "", risk)
        return
