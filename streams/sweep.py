"""Housekeeping of a partition's data that no hot-path script bounds (`sweep.lua`),
and its dead letters past their age (`purge.lua`, which the settle runs only as
new letters come). What `sluice.cleanup` (functions/cleanup.py) runs daily."""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.deadletter import dead_letters, purge
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Script

_SWEEP = Script.beside(__file__, "sweep.lua", allow_oom=True)
# Dead letters read and purged per call.
PAGE = 500


class Swept(msgspec.Struct, frozen=True):
    """What one partition's sweep removed."""

    consumers: int = 0
    limiter_states: int = 0
    deferral_records: int = 0
    dead_letters: int = 0

    def __add__(self, other: Swept) -> Swept:
        return Swept(
            self.consumers + other.consumers,
            self.limiter_states + other.limiter_states,
            self.deferral_records + other.deferral_records,
            self.dead_letters + other.dead_letters,
        )


async def redis_ms(client: Redis) -> int:
    """Redis's clock, in ms: every cut-off is on it, as the scripts' times are."""
    with wrap_unavailable():
        seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def sweep(
    client: Redis, keys: PartitionKeys, *, consumer_idle_ms: int, deferrals_before_ms: int
) -> Swept:
    """Delete consumers idle `consumer_idle_ms` holding nothing, limiter states
    already past, and deferral records whose last deferral was before
    `deferrals_before_ms` (Redis time)."""
    reply: Any = await _SWEEP(
        client,
        [keys.stream, keys.rate, keys.deferrals, keys.deferlog],
        [GROUP, consumer_idle_ms, deferrals_before_ms],
    )
    consumers, states, deferrals = (int(n) for n in reply)
    return Swept(consumers, states, deferrals)


async def purge_dead_before(client: Redis, keys: PartitionKeys, before_ms: int) -> int:
    """Purge the dead letters (and their jobs' records) written before `before_ms`
    (Redis time; a letter's entry id is its time); returns how many."""
    purged = 0
    until = f"{max(before_ms - 1, 0)}-{2**64 - 1}"
    while letters := await dead_letters(client, keys, PAGE, until=until):
        purged += await purge(client, keys, letters)
        if len(letters) < PAGE:
            break
    return purged
