"""The fault battery, security on the 3-master cluster: `rediss+cluster://` with a
CA made in the test (every node TLS only, its bus and replication as well) and
the ACL user of infra/redis-acl.conf on every node.

An ingress, a scheduler and a worker process run as that user over TLS: a job
published over HTTP runs, a delayed one is promoted and runs, and every route is
asked with the owner's and an admin key (the sweep of test_battery_acl_roles.py);
the only command any node refuses the user is CONFIG. The controls: a client
given another CA, no CA, the wrong password, or plain text to a TLS port never
reaches the cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import redis.exceptions

from sluice.streams.connection import RedisSettings, connect
from tests.chaos.conftest import Reported
from tests.chaos.security import Tally
from tests.chaos.test_battery_acl import denials, sluice_rule
from tests.chaos.test_battery_acl_roles import TOLERATED, Operator, ready, start_roles, sweep
from tests.chaos.test_battery_tenants import Tenants
from tests.chaos.test_battery_tls import Tls
from tests.redis_cluster import ClusterTls, RedisCluster

# A cluster's start and three processes on it: seconds, so with --long only.
pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.slow]

Report = Callable[[Reported], None]

PASSWORD = "battery-pw"


async def reaches(url: str, ca_file: str | None) -> bool:
    """Whether a cluster client with these settings gets an answer."""
    settings = RedisSettings(url=url, ca_file=ca_file, connect_timeout_s=1.0,
                             socket_timeout_s=1.0, retries=0)  # fmt: skip
    client = connect(settings)
    try:
        return bool(await client.ping())
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
        return False
    finally:
        await client.aclose()


async def refused_on_nodes(cluster: RedisCluster, ca_file: str) -> list[str]:
    """What any node refused the user (each keeps its own ACL log)."""
    found = []
    for node in cluster.nodes:
        admin = connect(RedisSettings(url=f"rediss://127.0.0.1:{node.port}/0", ca_file=ca_file))
        try:
            found += await denials(admin)
        finally:
            await admin.aclose()
    return found


async def test_rediss_and_the_acl_user_on_the_cluster(tmp_path: Path, figures: Report) -> None:
    tls = Tls(tmp_path)
    cluster = RedisCluster(tmp_path / "cluster", tls=ClusterTls(tls.cert, tls.key, tls.ca_file))
    cluster.start()
    seed = cluster.nodes[0].port
    url = f"rediss+cluster://sluice:{PASSWORD}@127.0.0.1:{seed}"
    ca = str(tls.ca_file)
    roles = None
    try:
        # ACL users are each node's own: the same rule on every one.
        for node in cluster.nodes:
            with contextlib.closing(cluster.admin(node)) as admin:
                rule = ("ACL", "SETUSER", "sluice", "reset", f">{PASSWORD}", *sluice_rule())
                admin.execute_command(*rule)  # type: ignore[no-untyped-call]  # unannotated
        roles = start_roles(tmp_path, url, {"SLUICE_REDIS_CA_FILE": ca})
        async with aiohttp.ClientSession() as http:
            t = Tenants(http, roles.base, roles.keys)
            await ready(t)
            op = Operator(t)
            await op.state_becomes(await op.publish({"n": 1}), "completed")
            await op.state_becomes(await op.publish({"n": 2}, delay_ms=300), "completed")
            matrix = await sweep(t)
        codes = roles.stop()
        # Before the controls: the wrong password's failed login is logged as well.
        refused = await refused_on_nodes(cluster, ca)
        controls = {
            "other CA": await reaches(url, str(tls.other_file)),
            "no CA": await reaches(url, None),
            "wrong password": await reaches(url.replace(PASSWORD, "not-the-pw"), ca),
            "plain to the TLS ports": await reaches(f"redis+cluster://127.0.0.1:{seed}", None),
        }
        kept = await reaches(url, ca)
    finally:
        if roles is not None:
            roles.stop()
        cluster.stop()
    figures(Tally("cluster-security", {
        "masters": len(cluster.nodes), "completed": 2, "routes": len(matrix.routes),
        "requests": matrix.requests() + sum(op.statuses.values()),
        "violations": len(op.wrong) + len(matrix.violations),
        "acl_refused": len(set(refused) - TOLERATED), "kept": int(kept),
        "refused": sum(not ok for ok in controls.values()), "controls": len(controls),
    }))  # fmt: skip
    assert op.wrong == [], "\n".join(op.wrong)
    assert matrix.violations == [], "\n".join(matrix.violations)
    assert set(refused) <= TOLERATED, refused
    assert codes == {"ingress": 0, "scheduler": 0, "worker": 0}, codes
    assert kept
    assert not any(controls.values()), controls
