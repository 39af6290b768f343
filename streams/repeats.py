"""Repeatable jobs: their schedules, stored per function partition.

A schedule is only a description; schedulers publish each tick as an ordinary
delayed job whose id is made of the schedule's name and the tick's time, so a
tick published by several schedulers is still one job.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.connection import Redis
from streams.errors import wrap_unavailable
from streams.keys import PartitionKeys


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


async def delete_schedule(client: Redis, keys: PartitionKeys, workspace: str, name: str) -> bool:
    with wrap_unavailable():
        return bool(await client.hdel(keys.repeats, _field(workspace, name)))
