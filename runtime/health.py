"""Whether this process can reach Redis, logged once per change, never per retry."""

from __future__ import annotations

import logging

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
