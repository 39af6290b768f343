"""A private local Redis Cluster for tests and the benchmark: 3 masters from
redis-server, made one cluster by `redis-cli --cluster create`, on free ports whose
bus ports are free too; optionally TLS only (clients, the bus and replication).
Needs `redis-server` and `redis-cli` on PATH."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import redis

from sluice.runtime.testing.redis import RedisServer

# A node's cluster bus listens on its port + 10000, so a port must leave room for it.
BUS_OFFSET = 10000
HIGHEST_PORT = 65535 - BUS_OFFSET
# Nodes give up on a silent peer after 2 s (the default 15 s would slow fault tests);
# a replica syncs at once (not after 5 s) and may take over however old its data.
NODE_OPTIONS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0",
                "--cluster-replica-validity-factor", "0")  # fmt: skip


def free_cluster_ports(count: int) -> list[int]:
    """`count` distinct free ports below 55535 whose bus ports are free as well.

    Every socket stays bound until all are chosen, so no port is picked twice.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            node = socket.socket()
            node.bind(("127.0.0.1", 0))
            held.append(node)
            port: int = node.getsockname()[1]
            if port >= HIGHEST_PORT:
                continue
            bus = socket.socket()
            try:
                bus.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                bus.close()
                continue
            held.append(bus)
            ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


class ClusterTls(NamedTuple):
    """TLS for every node: its certificate and key, and the CA that signed them
    (which the nodes trust for the bus, and clients for the nodes)."""

    cert: Path
    key: Path
    ca: Path

    def node_options(self, port: int) -> tuple[str, ...]:
        """A TLS port only (no plain one), the bus and replication in TLS as well,
        clients not asked for certificates."""
        return ("--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                "--tls-replication", "yes", "--tls-cert-file", str(self.cert),
                "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.ca),
                "--tls-auth-clients", "no")  # fmt: skip


class RedisCluster:
    """`masters` cluster-enabled redis-servers, each owning an even share of the slots,
    and `replicas` replicas of each (which take over a master that fails); with
    `tls`, they speak only TLS."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        *,
        replicas: int = 0,
        appendonly: bool = False,
        tls: ClusterTls | None = None,
    ) -> None:
        self.replicas = replicas
        self.tls = tls
        # What a client of a node needs besides its port (redis-py's options).
        self.client: dict[str, Any] = {}
        if tls is not None:
            self.client = {"ssl": True, "ssl_ca_certs": str(tls.ca)}
        self.nodes = [
            RedisServer(
                directory / f"node-{port}",
                port=port,
                appendonly=appendonly,
                options=NODE_OPTIONS + (() if tls is None else tls.node_options(port)),
                client=self.client,
            )
            for port in free_cluster_ports(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """A seed node's URL in the cluster scheme; the client finds the others."""
        scheme = "redis+cluster" if self.tls is None else "rediss+cluster"
        return f"{scheme}://127.0.0.1:{self.nodes[0].port}"

    def admin(self, node: RedisServer) -> redis.Redis:
        """A plain client of one node, as its default user (close it after use)."""
        return redis.Redis(port=node.port, socket_timeout=2.0, **self.client)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        replicas = ("--cluster-replicas", str(self.replicas), "--cluster-yes")
        tls = () if self.tls is None else ("--tls", "--cacert", str(self.tls.ca))
        create = ["redis-cli", *tls, "--cluster", "create", *addresses, *replicas]
        subprocess.run(create, check=True, capture_output=True, timeout=30)
        self.wait_ok()

    def running(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every running node reports `cluster_state:ok` and knows every node
        (a stopped one included: the others remember it)."""
        deadline = time.monotonic() + timeout_s
        for node in self.running():
            with contextlib.closing(self.admin(node)) as client:
                while True:
                    info = client.cluster("INFO")
                    known = int(info.get("cluster_known_nodes", 0))
                    replication = client.info("replication")
                    synced = replication.get("master_link_status", "up") == "up"
                    if info.get("cluster_state") == "ok" and known == len(self.nodes) and synced:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster not ok on {node.port}: {info}")
                    time.sleep(0.05)  # gossip between processes: no event to await

    def wait_failed_over(self, port: int, timeout_s: float = 30.0) -> None:
        """Until no running node names the stopped node on `port` as a slot's owner:
        its replica took over."""
        deadline = time.monotonic() + timeout_s
        for node in self.running():
            with contextlib.closing(self.admin(node)) as client:
                # Each range: start, end, then its primary (host, port, id) and replicas.
                while any(primary[1] == port for _, _, primary, *_ in client.cluster("SLOTS")):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no replica took over from {port}")
                    time.sleep(0.05)  # an election between processes: no event to await
        self.wait_ok(max(1.0, deadline - time.monotonic()))

    def flush(self) -> None:
        for node in self.running():
            with contextlib.closing(self.admin(node)) as client:
                if client.info("replication")["role"] == "master":  # replicas follow
                    client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running_cluster(
    directory: Path, masters: int = 3, *, appendonly: bool = False
) -> Iterator[RedisCluster]:
    cluster = RedisCluster(directory, masters, appendonly=appendonly)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
