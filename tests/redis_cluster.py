"""A private local Redis Cluster for tests: 3 masters from redis-server, made one
cluster by `redis-cli --cluster create`, on free ports whose bus ports are free too."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.redis_server import RedisServer

# A node's cluster bus listens on its port + 10000, so a port must leave room for it.
BUS_OFFSET = 10000
HIGHEST_PORT = 65535 - BUS_OFFSET
# Nodes give up on a silent peer after 2 s (the default 15 s would slow fault tests).
NODE_OPTIONS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000")  # fmt: skip
CREATE_OPTIONS = ("--cluster-replicas", "0", "--cluster-yes")


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


class RedisCluster:
    """`masters` cluster-enabled redis-servers, each owning an even share of the slots."""

    def __init__(self, directory: Path, masters: int = 3, *, appendonly: bool = False) -> None:
        self.nodes = [
            RedisServer(
                directory / f"node-{port}", port=port, appendonly=appendonly, options=NODE_OPTIONS
            )
            for port in free_cluster_ports(masters)
        ]

    @property
    def url(self) -> str:
        """A seed node's URL in the cluster scheme; the client finds the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = ["redis-cli", "--cluster", "create", *addresses, *CREATE_OPTIONS]
        subprocess.run(create, check=True, capture_output=True, timeout=30)
        self.wait_ok()

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every node reports `cluster_state:ok` and knows every other node."""
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            with contextlib.closing(redis.Redis(port=node.port, socket_timeout=1.0)) as client:
                while True:
                    info = client.cluster("INFO")
                    known = int(info.get("cluster_known_nodes", 0))
                    if info.get("cluster_state") == "ok" and known == len(self.nodes):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster not ok on {node.port}: {info}")
                    time.sleep(0.05)  # gossip between processes: no event to await

    def flush(self) -> None:
        for node in self.nodes:
            with contextlib.closing(redis.Redis(port=node.port, socket_timeout=2.0)) as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running_cluster(directory: Path, masters: int = 3) -> Iterator[RedisCluster]:
    cluster = RedisCluster(directory, masters)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
