"""The fault battery, TLS to Redis: `rediss://` to a redis-server that speaks only
TLS, its certificate from a CA made in the test (trustme).

A worker and an ingress given the CA (SLUICE_REDIS_CA_FILE) run a job published
over HTTP. The control: an ingress given another CA (and one given none) must
not reach Redis, and nothing falls back to plain text: the server has no plain
port, and a plain `redis://` client to its TLS port gets no answer.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
import redis.exceptions
import trustme

from sluice.runtime.ingress.auth import new_key
from sluice.streams.connection import RedisSettings, connect
from sluice.streams.errors import ConfigurationError
from tests.chaos.conftest import Reported
from tests.chaos.security import GuardedServer, Tally
from tests.redis_server import free_port
from tests.runtime.helpers import start_worker, wait_until

pytestmark = pytest.mark.chaos

Report = Callable[[Reported], None]


class Tls:
    """A CA, the server's certificate from it, and another CA nobody signed with."""

    def __init__(self, folder: Path) -> None:
        self.ca, self.other = trustme.CA(), trustme.CA()
        issued = self.ca.issue_cert("127.0.0.1", "localhost")
        self.cert, self.key = folder / "server.pem", folder / "server.key"
        self.ca_file, self.other_file = folder / "ca.pem", folder / "other-ca.pem"
        issued.cert_chain_pems[0].write_to_path(str(self.cert))
        issued.private_key_pem.write_to_path(str(self.key))
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.other.cert_pem.write_to_path(str(self.other_file))


def tls_server(folder: Path, tls: Tls) -> GuardedServer:
    """A redis-server with a TLS port only (no plain one), no client certificates."""
    server = GuardedServer(folder, client={"ssl": True, "ssl_ca_certs": str(tls.ca_file)})
    server.options = (
        "--port",
        "0",
        "--tls-port",
        str(server.port),
        "--tls-cert-file",
        str(tls.cert),
        "--tls-key-file",
        str(tls.key),
        "--tls-ca-cert-file",
        str(tls.ca_file),
        "--tls-auth-clients",
        "no",
    )
    return server


async def answers(url: str, ca_file: str | None) -> bool:
    client = connect(
        RedisSettings(
            url=url, ca_file=ca_file, connect_timeout_s=1.0, socket_timeout_s=1.0, retries=0
        )
    )
    try:
        return bool(await client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False
    finally:
        await client.aclose()


async def test_rediss_with_the_deployments_ca_and_no_plain_fallback(
    tmp_path: Path, figures: Report
) -> None:
    tls = Tls(tmp_path)
    server = tls_server(tmp_path / "redis", tls)
    server.start()
    url = f"rediss://127.0.0.1:{server.port}/0"
    key, stored = new_key("acme", ("acme",), admin=False)
    (tmp_path / "keys.json").write_bytes(msgspec.json.encode([stored]))
    port = free_port()
    ca = {"SLUICE_REDIS_CA_FILE": str(tls.ca_file)}
    ingress = start_worker(
        url,
        tmp_path / "unused",
        role="ingress",
        log=tmp_path / "ingress.log",
        environ={
            **ca,
            "SLUICE_INGRESS_HOST": "127.0.0.1",
            "SLUICE_INGRESS_PORT": str(port),
            "SLUICE_API_KEYS_FILE": str(tmp_path / "keys.json"),
        },
    )
    worker = start_worker(url, tmp_path / "ledger", log=tmp_path / "worker.log", environ=ca)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"{base}/readyz") as answer:
                        return answer.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_until(ready, 30.0, what="the ingress to reach Redis over TLS")
            event = {"workspace": "acme", "data": {"n": 1}}
            async with http.post(f"{base}/v1/events/tasks", json=event, headers=auth) as answer:
                assert answer.status == 202, await answer.text()
                job = (await answer.json())["id"]

            async def ran() -> bool:
                path = f"{base}/v1/jobs/{job}?function=tasks"
                async with http.get(path, headers=auth) as answer:
                    found: dict[str, object] = await answer.json()
                    return found["state"] == "completed"

            await wait_until(ran, 30.0, what="the worker to run the job over TLS")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        # The control: another CA, or none (only the system's), is refused; so is
        # plain text to the TLS port; and the URL's scheme is the only way in.
        refused = {
            "other CA": await answers(url, str(tls.other_file)),
            "no CA": await answers(url, None),
            "plain to the TLS port": await answers(f"redis://127.0.0.1:{server.port}/0", None),
        }
        kept = await answers(url, str(tls.ca_file))
    finally:
        for process in (ingress, worker):
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=15)
        server.stop()
    figures(
        Tally(
            "rediss",
            {
                "kept": int(kept),
                "refused": sum(not ok for ok in refused.values()),
                "controls": len(refused),
            },
        )
    )
    assert kept
    assert not any(refused.values()), refused


def test_a_ca_file_is_for_a_tls_url_only() -> None:
    with pytest.raises(ConfigurationError, match="rediss://"):
        RedisSettings(url="redis://redis.internal:6380/0", ca_file="/etc/ssl/ca.pem")
