"""The suite's redis-servers are the library's (runtime.testing.redis): one copy,
the one users' own tests get from the `sluice_redis_server` fixture."""

from sluice.runtime.testing.redis import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
