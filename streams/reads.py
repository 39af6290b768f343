"""Many reads side by side, within the connections a client has.

A page of jobs reads each record with its own script call (a record's reply
depends on its state), and the listing over every function asks each partition
at once. Gathered whole, a 1,000-job page would want 1,000 connections: redis-py's
cluster client refuses a call past its pool (64 per node) instead of waiting, and
a single server's blocking pool makes the rest wait anyway. So at most
`AT_ONCE` run at a time, which keeps a page's reads to a few round trips' time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")

# Well within a pool (64 connections by default) shared with other work.
AT_ONCE = 16


async def side_by_side(reads: Iterable[Awaitable[T]], at_once: int = AT_ONCE) -> list[T]:
    """The results of `reads`, in order, at most `at_once` running at a time."""
    gate = asyncio.Semaphore(at_once)

    async def one(read: Awaitable[T]) -> T:
        async with gate:
            return await read

    return await asyncio.gather(*(one(r) for r in reads))
