"""The suite's local Redis Cluster is the library's (runtime.testing.cluster), which
the benchmark starts too."""

from sluice.runtime.testing.cluster import (
    ClusterTls,
    RedisCluster,
    free_cluster_ports,
    running_cluster,
)

__all__ = ["ClusterTls", "RedisCluster", "free_cluster_ports", "running_cluster"]
