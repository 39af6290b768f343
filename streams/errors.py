"""Every exception Sluice raises derives from `SluiceError`.

redis-py's connection and timeout errors are wrapped as `RedisUnavailable` at
this layer's boundary, so callers above handle one type for "Redis is not there";
a Redis at its `maxmemory` (noeviction) refusing writes is `RedisFull`, one kind of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.exceptions


class SluiceError(Exception):
    """Base class of all Sluice errors."""


class RedisUnavailable(SluiceError):
    """Raised when Redis cannot be reached, times out, is still loading its data, or (a
    cluster) cannot serve a slot for now."""


class RedisFull(RedisUnavailable):
    """Raised when Redis refuses a write because it is at its `maxmemory` (noeviction).

    A kind of `RedisUnavailable`: it clears by itself once memory is freed (workers
    settle and delete jobs) or raised, so callers retry it with backoff like an outage.
    """


class InvalidName(SluiceError, ValueError):
    """Raised when a function name, workspace or job id could not be used in a key."""


class InvalidCursor(SluiceError, ValueError):
    """Raised when a listing cursor is not one a page of that listing returned."""


class ConfigurationError(SluiceError, ValueError):
    """Raised when a setting or declaration has a value Sluice cannot run with."""


_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # A cluster mid-failover or resharding: a slot without a live owner, a multi-key
    # call during a slot move, redirections that ran out: each clears by itself.
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,  # ClusterDownError, and "TTL exhausted"
    redis.exceptions.SlotNotCoveredError,
    OSError,
)
# What redis-py's cluster client raises when no node it knows answers; its other
# RedisClusterExceptions are bugs (keys of a call in different slots).
_NO_NODE = "Redis Cluster cannot be connected"


@contextlib.contextmanager
def wrap_unavailable() -> Iterator[None]:
    """Turn redis-py's "cannot talk to Redis" errors into `RedisUnavailable`."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except redis.exceptions.RedisClusterException as exc:
        if str(exc).startswith(_NO_NODE):
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise
    except redis.exceptions.OutOfMemoryError as exc:
        # "-OOM command not allowed when used memory > 'maxmemory'": refused before
        # anything was written (a script stops at its first write; see streams.lua).
        raise RedisFull(f"Redis is full: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        # A restarted server still loading its AOF, or a replica mid-failover, answers
        # with these; they clear by themselves, so they are availability, not bugs.
        if str(exc).startswith(("LOADING", "MASTERDOWN", "READONLY")):
            raise RedisUnavailable(str(exc)) from exc
        raise
