"""Whether this process can reach Redis: logged once per change and then once a
period while it cannot, never per retry; what it last did; and when to give up.

Every loop of a process reports what its calls see (runtime.guard.Guard). A
refusal (`RedisRefused`: no or wrong password, an ACL denial) does not clear by
waiting: a worker or scheduler ends once one task was refused `refused_tries`
times in a row, with one line that says so, rather than retrying forever. Per
task, not per process: a user the ACL lets ping and read but not settle must
not pass because the reads go through.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sluice.runtime.backoff import Backoff
from sluice.runtime.lifecycle import sleep_unless
from sluice.streams.connection import Redis
from sluice.streams.errors import RedisRefused, RedisUnavailable
from sluice.streams.server import server_configs

log = logging.getLogger(__name__)

# How often an outage that goes on is logged again, with its length.
REPORT_EVERY_S = 60.0
# Refusals in a row after which a worker or scheduler gives up (runtime.cli).
REFUSED_TRIES = 5


class RedisHealth:
    """Shared by every loop of a process; each reports what its last call saw."""

    __slots__ = (
        "available",
        "down_since",
        "error",
        "gave_up",
        "giving_up",
        "last",
        "refused",
        "refused_tries",
        "report_every_s",
        "reported_at",
        "url",
    )

    def __init__(
        self, url: str, *, report_every_s: float = REPORT_EVERY_S, refused_tries: int = 0
    ) -> None:
        self.url = url
        self.available = True
        # While unavailable: since when (monotonic), the last error, and when it was logged.
        self.down_since = 0.0
        self.error = ""
        self.reported_at = 0.0
        self.report_every_s = report_every_s
        # Whether the last failure was a refusal; once a task was refused
        # `refused_tries` times in a row (0: never), `gave_up` holds the error the
        # process ends with.
        self.refused = False
        self.refused_tries = refused_tries
        self.gave_up: RedisRefused | None = None
        self.giving_up = asyncio.Event()
        # What went through last, by activity ("read", "settle", "promote"): wall time.
        self.last: dict[str, float] = {}

    def down(self, error: BaseException, tries: int = 1) -> None:
        """A call failed with `error`; a refusal, the `tries`-th in a row of its task."""
        now = time.monotonic()
        self.error = str(error)
        refused = isinstance(error, RedisRefused)
        if refused:
            if not self.refused:
                log.error("redis at %s refused this process: %s", self.url, error)
            if self.refused_tries and tries >= self.refused_tries and not self.gave_up:
                where = f"redis at {self.url}, {tries} tries in a row"
                self.gave_up = RedisRefused(f"{error} ({where})")
                self.giving_up.set()
        self.refused = refused
        if self.available:
            self.available = False
            self.down_since = self.reported_at = now
            if not refused:
                log.warning("redis unavailable at %s: %s; retrying with backoff", self.url, error)
        elif now - self.reported_at >= self.report_every_s:
            self.reported_at = now
            log.warning(
                "redis still unavailable at %s, for %.0f s: %s",
                self.url,
                now - self.down_since,
                error,
            )

    def up(self) -> None:
        if not self.available:
            self.available = True
            self.refused = False
            log.warning(
                "redis available again at %s, after %.0f s",
                self.url,
                time.monotonic() - self.down_since,
            )

    def did(self, activity: str) -> None:
        """`activity` went through (a read, a settle, a promotion), for the health probe."""
        self.last[activity] = time.time()

    def down_for_s(self) -> float:
        return 0.0 if self.available else time.monotonic() - self.down_since

    async def refusing(self) -> RedisRefused:
        """Return once Redis refused this process `refused_tries` times in a row."""
        await self.giving_up.wait()
        return self.gave_up or RedisRefused(self.error)


async def report_server(client: Redis, url: str, stop: asyncio.Event) -> None:
    """Log the server's (every primary's) durability settings once it answers; warn
    loudly on risky ones.

    Runs beside the hosts, so a Redis that is down at start delays only this report.
    """
    backoff = Backoff()
    while not stop.is_set():
        try:
            configs = await server_configs(client)
        except RedisRefused as exc:
            # Managed Redis often denies INFO and CONFIG: nothing to check, nothing wrong.
            log.warning("redis at %s: its durability settings cannot be read: %s", url, exc)
            return
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
