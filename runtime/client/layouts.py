"""Where a workspace's jobs may lie while its function's partition count changes:
its partition in each layout the function's jobs may still be in (streams.layouts).

A lookup by business key or tag looks in the workspace's partition of each
earlier layout first, then acts in the current one, as does a publish with a
given id or a key (streams.supersede): the partitions are other slots on a
cluster, so no one script covers them. What is left to chance: a publisher still
on the old count (a rolling deploy not yet done) may write the key, id or tag in
the old partition after the look and before the act, and then one key names a
job in each layout until one of them ends (cancelling the key or tag again
reaches both).

A function with only its declared layout pays for this one SMEMBERS per lookup,
and per publish none at all: a publish reads the layouts, for a function whose
jobs carry a key or a given id, at most once every CACHE_S per client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from sluice.runtime.registry import Registry, partition_keys
from sluice.streams import layouts
from sluice.streams.connection import Redis, is_cluster
from sluice.streams.keys import SEP, PartitionKeys, partition_of
from sluice.streams.publish import Outgoing
from sluice.streams.supersede import supersede

# Jobs one supersede call looks at, at most (as a publish's chunk).
CHUNK = 1000

# How long a publishing client trusts the layouts it read: a count joins them when
# a worker of it starts, which a publisher of the new count needs to learn only
# for a worker of an old count started again (a deploy rolled back).
CACHE_S = 5.0


class Layouts:
    """The partition layouts of the functions of `registry`, as `redis` knows them."""

    def __init__(self, redis: Redis, registry: Registry) -> None:
        self.redis, self.registry = redis, registry
        self.cluster = is_cluster(redis)
        # Function name -> (monotonic time read, its counts).
        self._read: dict[str, tuple[float, frozenset[int]]] = {}

    async def counts(self, function: str, *, cached: bool = False) -> frozenset[int]:
        """The partition counts `function`'s jobs may lie in: its declared one and
        the layouts' (read now, or with `cached` as read within CACHE_S)."""
        now = time.monotonic()
        if cached and (read := self._read.get(function)) is not None and now - read[0] < CACHE_S:
            return read[1]
        declared = self.registry.by_name[function].options.partitions
        found = frozenset({declared, *await layouts.known(self.redis, function)})
        self._read[function] = (now, found)
        return found

    async def earlier(
        self, function: str, workspace: str, *, cached: bool = False
    ) -> list[PartitionKeys]:
        """`workspace`'s partitions in `function`'s other layouts that are not its
        partition in the current one: none for a function of one layout."""
        counts = await self.counts(function, cached=cached)
        if len(counts) == 1:
            return []
        fn = self.registry.by_name[function]
        current = partition_keys(fn, partition_of(workspace, fn.options.partitions), self.cluster)
        found: dict[str, PartitionKeys] = {}
        for count in sorted(counts):
            keys = partition_keys(fn, partition_of(workspace, count), self.cluster, count)
            if keys.tag != current.tag:
                found.setdefault(keys.tag, keys)
        return list(found.values())

    async def places(self, function: str, workspace: str) -> list[PartitionKeys]:
        """Where a job of `workspace` may be: its partitions of earlier layouts, then
        its partition of the current one (last: where a lookup acts when it found
        nothing before)."""
        # First: it raises UnknownFunction for a function the registry lacks.
        current = self.registry.partitions(function, workspace, cluster=self.cluster)
        return [*await self.earlier(function, workspace), *current]

    async def superseded(
        self, groups: Mapping[PartitionKeys, Sequence[Outgoing]]
    ) -> set[tuple[str, str]]:
        """Before `groups` (jobs by partition of the current layout) are written:
        (function, stored id) of those with a given id that are in their
        workspace's partition of an earlier layout already (duplicates), and a job
        a business key names there is replaced or left by the key
        (streams.supersede). Nothing to ask for a function of one layout."""
        asks: dict[PartitionKeys, list[tuple[str, str]]] = {}
        for keys, jobs in groups.items():
            if len(await self.counts(keys.function, cached=True)) == 1:
                continue
            for job in jobs:
                e = job.envelope
                if not e.key and SEP not in e.id:
                    continue  # a generated id without a key: nothing names it before
                keyfield = f"{e.workspace}/{e.key}" if e.key else ""
                for old in await self.earlier(keys.function, e.workspace, cached=True):
                    asks.setdefault(old, []).append((e.id, keyfield))
        found: set[tuple[str, str]] = set()
        for old, named in asks.items():
            share = self.registry.share(old.function)
            for start in range(0, len(named), CHUNK):
                chunk = named[start : start + CHUNK]
                found |= {(old.function, i) for i in await supersede(self.redis, old, chunk, share)}
        return found
