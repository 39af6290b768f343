"""Cancel jobs that have not started (by id, business key or tag); move a delayed one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys, tag_member
from sluice.streams.lua import Arg, Script
from sluice.streams.publish import DEFAULT_SHARE

_CANCEL = Script.beside(__file__, "cancel.lua", uses=["record", "admit", "links", "lookup"])
_RESCHEDULE = Script.beside(__file__, "reschedule.lua", uses=["record", "lookup"])

Selector = Literal["key", "tag"]


async def cancel(
    client: Redis,
    keys: PartitionKeys,
    by: Selector,
    value: str,
    workspace: str,
    share: int = DEFAULT_SHARE,
) -> dict[str, str]:
    """Cancel the job of business key `value`, or every job of tag `value`, in
    `workspace`.

    Returns each job considered (by stored id) with its outcome: 'cancelled' (now,
    or before), or the state that kept it ('active', or a finished state).
    """
    selector = f"{workspace}/{value}" if by == "key" else tag_member(workspace, value, "")
    return await _cancel(client, keys, [by, selector, share])


async def cancel_job(
    client: Redis,
    keys: PartitionKeys,
    ids: Sequence[str],
    workspace: str = "",
    share: int = DEFAULT_SHARE,
) -> str:
    """Cancel the first job of `ids` (stored ids, see `keys.job_ref`) that is of
    `workspace` ("": any). Returns 'cancelled' (now, or before), or the state
    that kept it ('missing', 'active', or a finished state)."""
    if not ids:
        return "missing"
    outcome = await _cancel(client, keys, ["id", workspace, share, *ids])
    return next(iter(outcome.values()), "missing")


async def _cancel(client: Redis, keys: PartitionKeys, args: list[Arg]) -> dict[str, str]:
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
        [GROUP, *args],
    )
    assert isinstance(reply, list)
    return {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply), 2)}


async def reschedule(
    client: Redis,
    keys: PartitionKeys,
    ids: Sequence[str],
    workspace: str = "",
    *,
    due_ms: int = 0,
    delay_ms: int = 0,
) -> str:
    """Move the due time (epoch ms, or `delay_ms` from now by Redis's clock) of the
    first delayed job of `ids` (stored ids, see `keys.job_ref`) that is of
    `workspace` ("": any); returns 'delayed' when moved, else the state that kept
    it ('missing', 'queued', ...)."""
    if not ids:
        return "missing"
    reply = await _RESCHEDULE(
        client, [keys.jobs, keys.delayed, keys.wake], [due_ms, delay_ms, workspace, *ids]
    )
    assert isinstance(reply, bytes)
    return reply.decode()
