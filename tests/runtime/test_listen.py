"""A busy ingress port: `sluice ingress` and `sluice dev` stop at once with one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.redis_server import RedisServer


@pytest.mark.parametrize("role", ["ingress", "dev"])
def test_a_busy_port_is_a_one_line_start_up_error(role: str, shared_server: RedisServer) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        environ.update(
            REDIS_URL=shared_server.url,
            SLUICE_INGRESS_HOST="127.0.0.1",
            SLUICE_INGRESS_PORT=str(port),
            SLUICE_DEMO="false",
        )
        result = subprocess.run(
            [sys.executable, "-m", "sluice", role],
            env=environ,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"sluice: cannot listen on 127.0.0.1:{port}: address already in use\n"
