"""Cancel jobs that have not started (by id, business key or tag); move a delayed one."""

from __future__ import annotations

from typing import Literal

from streams.connection import Redis
from streams.keys import GROUP, PartitionKeys, tag_member
from streams.lua import Script
from streams.publish import DEFAULT_SHARE

_CANCEL = Script.beside(__file__, "cancel.lua", uses=["admit.lua", "links.lua"])
_RESCHEDULE = Script.beside(__file__, "reschedule.lua")

Selector = Literal["id", "key", "tag"]


async def cancel(
    client: Redis,
    keys: PartitionKeys,
    by: Selector,
    value: str,
    workspace: str = "",
    share: int = DEFAULT_SHARE,
) -> dict[str, str]:
    """Cancel the job with id `value`, or the job of business key `value`, or every
    job of tag `value` (key and tag within `workspace`).

    Returns each job considered with its outcome: 'cancelled' (now, or before),
    or the state that kept it ('missing', 'active', or a finished state).
    """
    selector = {"id": value, "key": f"{workspace}/{value}", "tag": tag_member(workspace, value, "")}
    reply = await _CANCEL(
        client,
        [
            keys.jobs,
            keys.delayed,
            keys.stream,
            keys.stats,
            keys.done,
            keys.keyed,
            keys.tagged,
            keys.backlog,
            keys.share,
        ],
        [GROUP, by, selector[by], share],
    )
    assert isinstance(reply, list)
    return {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply), 2)}


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
