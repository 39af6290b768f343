"""Redis Cluster: the settings that ask for one, and the data layer's calls on a local
3-master cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.exceptions
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.crc import key_slot

from sluice.runtime.settings import from_env
from sluice.streams import webhooks
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.consume import ensure_group, read, read_unless_paused
from sluice.streams.errors import ConfigurationError, RedisUnavailable, wrap_unavailable
from sluice.streams.jobs import counts
from sluice.streams.keys import PartitionKeys
from tests.conftest import settings_for
from tests.redis_cluster import RedisCluster
from tests.redis_server import free_port

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(
    "settings",
    [
        RedisSettings(url="redis+cluster://10.0.0.1:7000"),
        RedisSettings(url="rediss+cluster://u:p@redis.example:7000/0"),
        RedisSettings(url="redis://10.0.0.1:7000", cluster=True),
    ],
)
def test_a_cluster_is_asked_for_by_the_url_scheme_or_the_setting(settings: RedisSettings) -> None:
    assert settings.is_cluster()


def test_cluster_from_the_environment_with_redis_url_or_its_parts() -> None:
    named = from_env({"REDIS_URL": "redis://h:7000", "SLUICE_REDIS_CLUSTER": "true"})
    assert named.redis.is_cluster()
    seeded = from_env({"REDIS_HOST": "h", "REDIS_PORT": "7000", "SLUICE_REDIS_CLUSTER": "1"})
    assert seeded.redis.is_cluster()
    assert seeded.redis.url == "redis://h:7000/0"
    # The parts agree with a cluster URL of the same host, port and TLS.
    tls = from_env({"REDIS_URL": "rediss+cluster://h:7000", "REDIS_HOST": "h", "REDIS_TLS": "1"})
    assert tls.redis.is_cluster()
    assert not from_env({"REDIS_URL": "redis://h:7000"}).redis.is_cluster()


@pytest.mark.parametrize(
    ("url", "cluster"),
    [
        ("redis+cluster://h:7000/2", False),
        ("redis://h:7000/1", True),
        ("redis://h:7000/?db=3", True),
        ("unix:///run/redis.sock", True),
    ],
)
def test_a_cluster_has_database_0_over_tcp_only(url: str, cluster: bool) -> None:
    with pytest.raises(ConfigurationError, match="Cluster"):
        RedisSettings(url=url, cluster=cluster)


def test_a_database_in_the_parts_of_a_cluster_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="database 0"):
        from_env({"REDIS_HOST": "h", "REDIS_DB": "2", "SLUICE_REDIS_CLUSTER": "true"})


async def test_every_partition_is_reached_wherever_its_node(cluster_redis: Redis) -> None:
    # Before the cluster client, every key on another node than the URL's was MOVED.
    for p in range(8):
        keys = PartitionKeys("tasks", p)
        await ensure_group(cluster_redis, keys)
        await cluster_redis.hset(keys.jobs, "a", "1")
        assert await cluster_redis.hget(keys.jobs, "a") == b"1"


async def test_the_cluster_client_speaks_resp3_and_packs_with_hiredis_on_every_node(
    cluster_redis: Redis,
) -> None:
    assert isinstance(cluster_redis, RedisClusterClient)
    await cluster_redis.initialize()
    for node in cluster_redis.get_primaries():
        info = await cluster_redis.client_info(target_nodes=node)
        assert info["resp"] == "3"
        assert node.connection_class.__name__ == "_Tcp"  # hiredis packing


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.SlotNotCoveredError('Slot "7" is not covered by the cluster.'),
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.TryAgainError("TRYAGAIN"),
        redis.exceptions.ClusterError("TTL exhausted."),
        redis.exceptions.RedisClusterException(
            "Redis Cluster cannot be connected. Please provide at least one reachable node"
        ),
    ],
)
def test_a_cluster_that_cannot_serve_a_slot_is_redis_unavailable(error: Exception) -> None:
    with pytest.raises(RedisUnavailable), wrap_unavailable():
        raise error


def test_a_cross_slot_call_is_a_bug_not_an_outage() -> None:
    with pytest.raises(redis.exceptions.RedisClusterException), wrap_unavailable():
        raise redis.exceptions.RedisClusterException(
            "EVALSHA - all keys must map to the same key slot"
        )


async def test_a_cluster_whose_nodes_are_all_down_is_unavailable() -> None:
    # Nothing listens there: the client finds no node to learn the layout from.
    client = connect(settings_for(f"redis+cluster://127.0.0.1:{free_port()}", retries=0))
    try:
        with pytest.raises(RedisUnavailable):
            await counts(client, PartitionKeys("tasks", 0))
    finally:
        await client.aclose()


@pytest.mark.parametrize("function", ["tasks", "batch-tasks", "sms.send", "email.send", "x"])
async def test_three_partitions_on_three_primaries_use_all_three(
    cluster_redis: Redis, function: str
) -> None:
    # Before, the tags {batch-tasks#0..2} and {sms.send#0..2} sat on two primaries.
    assert isinstance(cluster_redis, RedisClusterClient)
    await cluster_redis.initialize()
    owners = {
        cluster_redis.get_node_from_key(PartitionKeys(function, p, 3).stream) for p in range(3)
    }
    assert owners == set(cluster_redis.get_primaries())


@given(function=st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,20}", fullmatch=True), data=st.data())
def test_each_partition_lands_in_the_middle_of_its_share_of_slots(
    function: str, data: st.DataObject
) -> None:
    partitions = data.draw(st.integers(2, 64))
    p = data.draw(st.integers(0, partitions - 1))
    share = 16384 / partitions
    slot = key_slot(PartitionKeys(function, p, partitions).stream.encode())
    assert (p + 0.25) * share <= slot < (p + 0.75) * share


@given(function=st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,20}", fullmatch=True))
def test_single_server_keys_and_one_partition_keep_the_tag_they_had(function: str) -> None:
    # Spreading renames nothing a single server stored, nor a one-partition function.
    assert PartitionKeys(function, 3).tag == f"sluice:{{{function}#3}}"
    assert PartitionKeys(function, 0, 1).tag == f"sluice:{{{function}#0}}"


async def test_concurrent_first_calls_of_a_new_client_each_reach_their_node(
    shared_cluster: RedisCluster,
) -> None:
    # Before: redis-py sent calls made before it knew the layout to random nodes,
    # and after 5 MOVED replies closed every connection under the others' feet.
    shared_cluster.flush()
    client = connect(settings_for(shared_cluster.url, retries=0))
    try:
        names = [f"f{i}" for i in range(40)]
        await asyncio.gather(*(ensure_group(client, PartitionKeys(n, 0)) for n in names))
        assert all([await client.exists(PartitionKeys(n, 0).stream) for n in names])
    finally:
        await client.aclose()


async def test_webhook_endpoints_watched_transactions_run_on_the_cluster(
    cluster_redis: Redis,
) -> None:
    endpoint = webhooks.Endpoint(id="e1", url="https://example.com/hook", secret="whsec_x")
    assert await webhooks.add(cluster_redis, "w", endpoint, limit=1)
    assert not await webhooks.add(cluster_redis, "w", endpoint, limit=1)  # at the cap
    assert await webhooks.disable(cluster_redis, "w", "e1", "410 Gone", 5)
    (stored,) = await webhooks.endpoints(cluster_redis, "w")
    assert (stored.disabled, stored.disabled_ms) == ("410 Gone", 5)
    await webhooks.keep_settled(cluster_redis, "job-1", {"e1": b"200"}, ttl_s=60)
    assert await webhooks.settled(cluster_redis, "job-1") == {"e1": b"200"}


async def test_a_read_asks_no_node_where_its_keys_are(
    cluster_redis: Redis, shared_cluster: RedisCluster
) -> None:
    """redis-py's cluster client asks a node (COMMAND GETKEYS) where the keys of a
    command whose keys move are, XREADGROUP's: two more round trips per read, to a
    node that may not be the stream's. The connection finds them itself."""
    keys = PartitionKeys("tasks", 0, spread_over=1)
    await ensure_group(cluster_redis, keys)
    for node in shared_cluster.running():
        with contextlib.closing(shared_cluster.admin(node)) as admin:
            admin.config_resetstat()
    await read(cluster_redis, keys, "c1", 10, 1)
    await read_unless_paused(cluster_redis, keys, "c1", 10, 1)
    asked = {}
    for node in shared_cluster.running():
        with contextlib.closing(shared_cluster.admin(node)) as admin:
            stats = admin.info("commandstats")
            asked[node.port] = stats.get("cmdstat_command|getkeys", {}).get("calls", 0)
            assert stats.get("cmdstat_xreadgroup", {}).get("calls", 0) in (0, 2)
    assert sum(asked.values()) == 0, asked
