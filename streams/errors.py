"""Every exception Sluice raises derives from `SluiceError`.

redis-py's connection and timeout errors are wrapped as `RedisUnavailable` at
this layer's boundary, so callers above handle one type for "Redis is not there";
a Redis at its `maxmemory` (noeviction) refusing writes is `RedisFull`, one kind of it.
A function's consumer group gone (Redis lost its data) is `GroupMissing`.
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


class RedisRefused(RedisUnavailable):
    """Raised when Redis refuses this client: no password where one is required, a
    wrong password or user, or an ACL that denies a command or key.

    A kind of `RedisUnavailable`, so every caller backs off and answers 503 as for
    an outage; but it does not clear by waiting, so workers and schedulers end after
    a few tries (runtime.health) instead of retrying forever.
    """


class GroupMissing(SluiceError):
    """Raised when a function partition's stream or its consumer group is gone: Redis
    lost its data (restarted without AOF, failed over to an empty replica, FLUSHALL).

    Not an outage: retrying does not bring the data back. The entries a worker held
    went with it, so they are no longer its own (as if fenced); the worker drops them,
    recreates the group (streams.consume.ensure_group) and reads on.
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
    """Turn redis-py's "cannot talk to Redis" errors into `RedisUnavailable`, its
    refusals of the credentials or of a command into `RedisRefused`, in plain words,
    and a missing consumer group into `GroupMissing`."""
    try:
        yield
    except redis.exceptions.AuthenticationError as exc:
        raise RedisRefused(_refusal(exc)) from exc
    except redis.exceptions.NoPermissionError as exc:
        raise RedisRefused(f"Redis refused a command: the ACL user may not run it ({exc})") from exc
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
        # In a pipeline's error the reply follows the command's name, hence `in`.
        if "NOGROUP" in str(exc):
            raise GroupMissing(str(exc)) from exc
        # A restarted server still loading its AOF, or a replica mid-failover, answers
        # with these; they clear by themselves, so they are availability, not bugs.
        if str(exc).startswith(("LOADING", "MASTERDOWN", "READONLY")):
            raise RedisUnavailable(str(exc)) from exc
        raise


def _refusal(exc: redis.exceptions.AuthenticationError) -> str:
    """What an authentication error means. Without a password, redis-py's RESP3
    handshake gets "HELLO must be called with the client already authenticated"."""
    said = str(exc)
    if "HELLO must be called" in said or said.startswith(("NOAUTH", "Authentication required")):
        return (
            "Redis refused the connection: it requires a password and none was given "
            "(REDIS_URL's user:password@, or REDIS_PASSWORD)"
        )
    return f"Redis refused the credentials: wrong password or user, or a disabled user ({said})"
