"""Repeatable jobs: their schedules, stored per function partition.

A schedule is only a description; schedulers publish each tick as an ordinary
delayed job whose id is made of the schedule's name and the tick's time, so a
tick published by several schedulers is still one job.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys
from sluice.streams.lua import Script

_SWAP = Script.beside(__file__, "repeats.lua")


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """Run `payload` for `workspace` on a cron expression or every `every_ms`."""

    name: str
    workspace: str
    payload: msgspec.Raw
    cron: str = ""
    zone: str = "UTC"
    every_ms: int = 0
    # When the schedule was (last) added: its version, and the start from which
    # interval ticks fall on anchor_ms + k * every_ms.
    anchor_ms: int = 0
    # Bounds, 0 for none: no tick before `start_ms` (interval ticks then fall on
    # start_ms + k * every_ms), none after `end_ms`, at most `limit` of them;
    # `last_ms` is the due time of the limit's last tick, worked out when added.
    # Schedules stored before these fields read as unbounded.
    start_ms: int = 0
    end_ms: int = 0
    limit: int = 0
    last_ms: int = 0
    # Paused: no ticks are made. `resumed_ms` is part of the ticks' ids, so the
    # ticks cancelled at the pause are made anew after a resume.
    paused: bool = False
    resumed_ms: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Schedule)


def _field(workspace: str, name: str) -> str:
    # Names are per workspace: two tenants may both have a "daily" schedule.
    return f"{workspace}/{name}"


async def save_schedule(client: Redis, keys: PartitionKeys, schedule: Schedule) -> None:
    field = _field(schedule.workspace, schedule.name)
    with wrap_unavailable():
        await client.hset(keys.repeats, field, _encoder.encode(schedule))


async def load_schedules(client: Redis, keys: PartitionKeys) -> list[Schedule]:
    with wrap_unavailable():
        stored: Any = await client.hgetall(keys.repeats)
    return [_decoder.decode(value) for value in stored.values()]


async def load_schedule(
    client: Redis, keys: PartitionKeys, workspace: str, name: str
) -> Schedule | None:
    with wrap_unavailable():
        stored: Any = await client.hget(keys.repeats, _field(workspace, name))
    return None if stored is None else _decoder.decode(stored)


async def swap_schedule(client: Redis, keys: PartitionKeys, old: Schedule, new: Schedule) -> bool:
    """Write `new` in place of `old`; False if the stored schedule is no longer `old`."""
    field = _field(old.workspace, old.name)
    with wrap_unavailable():
        with_old: Any = await client.hget(keys.repeats, field)
    if with_old is None or _decoder.decode(with_old) != old:
        return False
    written = await _SWAP(client, [keys.repeats], [field, with_old, _encoder.encode(new)])
    return bool(written)


async def delete_schedule(client: Redis, keys: PartitionKeys, workspace: str, name: str) -> bool:
    with wrap_unavailable():
        return bool(await client.hdel(keys.repeats, _field(workspace, name)))
