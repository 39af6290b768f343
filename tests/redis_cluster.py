"""The suite's local Redis Cluster is the library's (runtime.testing.cluster), which
the benchmark starts too."""

from sluice.runtime.testing.cluster import RedisCluster, free_cluster_ports, running_cluster

__all__ = ["RedisCluster", "free_cluster_ports", "running_cluster"]
