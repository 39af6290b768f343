"""Private redis-server processes for tests: free port, own folder, kill/pause/restart.

Sluice's own test suite and the `sluice_redis_server` fixture
(runtime.testing.pytest) start theirs with this; it needs `redis-server` on PATH.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

# The production configuration (the repository's infra/redis.conf, which a test holds
# equal): AOF with every write synced, nothing evicted. Given on the command line, as
# an installed library has no infra/; each server adds its port, directory and log.
PRODUCTION = (
    ("appendonly", "yes"),
    ("appendfsync", "always"),
    ("save", ""),
    ("maxmemory-policy", "noeviction"),
    ("hash-max-listpack-entries", "32"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1, never the default port, configured as in
    production (PRODUCTION), with AOF on by default.

    AOF with `appendfsync always` is the production setting (DESIGN.md): a restart
    keeps every acknowledged write, so restart tests check what users would get.
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = True,
        wrapper: tuple[str, ...] = (),
        port: int | None = None,
        options: tuple[str, ...] = (),
        client: dict[str, Any] | None = None,
    ) -> None:
        self.directory = directory
        # A command the server runs under (valgrind, for the bench's instruction counts).
        self.wrapper = wrapper
        # Further redis-server options (a cluster node's, runtime.testing.cluster).
        self.options = options
        # What the server's own pings need, as redis-py's options (a TLS-only
        # server's: ssl and the CA; runtime.testing.cluster).
        self.client = client or {}
        self.port = free_port() if port is None else port
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            *self.wrapper,
            "redis-server",
            *(arg for name, value in PRODUCTION for arg in (f"--{name}", value)),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.options,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready(60.0 if self.wrapper else 10.0)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        client = redis.Redis(
            port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5, **self.client
        )
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not start")
                time.sleep(0.01)  # polling a process we just spawned; no event to await
        finally:
            client.close()

    def flush(self) -> None:
        """Empty every database (FLUSHALL): a shared server between tests."""
        client = redis.Redis(port=self.port, socket_timeout=5, **self.client)
        try:
            client.flushall()
        finally:
            client.close()

    def _signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL: the server dies with no chance to save."""
        self._signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGTERM)
            self._reap()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _reap(self) -> None:
        assert self.process is not None
        self.process.wait(timeout=10)
        self.process = None
