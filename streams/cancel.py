"""Cancel or reschedule one job that has not started yet."""

from __future__ import annotations

from streams.connection import Redis
from streams.keys import GROUP, PartitionKeys
from streams.lua import Script

_CANCEL = Script.beside(__file__, "cancel.lua")
_RESCHEDULE = Script.beside(__file__, "reschedule.lua")


async def cancel(client: Redis, keys: PartitionKeys, job_id: str) -> str:
    """Cancel a delayed or queued job; returns 'cancelled', else the state that kept it
    ('missing', 'active', or a finished state) and nothing changed."""
    reply = await _CANCEL(
        client, [keys.jobs, keys.delayed, keys.stream, keys.stats, keys.done], [GROUP, job_id]
    )
    assert isinstance(reply, bytes)
    return reply.decode()


async def reschedule(
    client: Redis, keys: PartitionKeys, job_id: str, *, due_ms: int = 0, delay_ms: int = 0
) -> str:
    """Move a delayed job's due time (epoch ms, or `delay_ms` from now by Redis's clock);
    returns 'delayed' when moved, else the state that kept it ('missing', 'queued', ...)."""
    reply = await _RESCHEDULE(
        client, [keys.jobs, keys.delayed], [keys.wake, job_id, due_ms, delay_ms]
    )
    assert isinstance(reply, bytes)
    return reply.decode()
