"""The dead-letter stream of a function partition: read, replay, purge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from sluice.streams import envelope as env
from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import PartitionKeys, links
from sluice.streams.lua import Arg, Script
from sluice.streams.publish import DEFAULT_SHARE

_REPLAY = Script.beside(__file__, "replay.lua", uses=["record", "admit"])
_PURGE = Script.beside(__file__, "purge.lua", uses=["record"])


class DeadLetter(msgspec.Struct, frozen=True):
    entry_id: str
    # As of the last attempt; `errors` holds every failed attempt's error.
    envelope: env.Envelope
    reason: str


async def dead_letters(
    client: Redis, keys: PartitionKeys, count: int = 100, after: str = "-", until: str = "+"
) -> list[DeadLetter]:
    """The oldest `count` dead letters of the partition, from entry id `after` on
    (exclusive), up to `until` (inclusive)."""
    start = after if after == "-" else f"({after}"
    with wrap_unavailable():
        entries: Any = await client.xrange(keys.dead, min=start, max=until, count=count)
    return [
        DeadLetter(eid.decode(), _envelope(keys, eid.decode(), fields[b"e"]), fields[b"r"].decode())
        for eid, fields in entries
    ]


def _envelope(keys: PartitionKeys, entry_id: str, data: bytes) -> env.Envelope:
    """The letter's envelope; for one that never decoded (it was dead-lettered for
    that), a stand-in with its made-up id, so it can still be listed and purged."""
    try:
        return env.decode(data)
    except msgspec.DecodeError:
        return env.Envelope(f"corrupt-{entry_id}", keys.function, "", msgspec.Raw(b""), 0)


async def replay(
    client: Redis, keys: PartitionKeys, letters: Sequence[DeadLetter], share: int = DEFAULT_SHARE
) -> int:
    """Queue `letters` again as fresh jobs (attempt 1, error history kept); returns how many.

    Letters already replayed or purged by someone else are skipped.
    """
    if not letters:
        return 0
    args: list[Arg] = [share]
    for letter in letters:
        fresh = msgspec.structs.replace(letter.envelope, attempt=1)
        linked = links(fresh.workspace, fresh.id, fresh.key, fresh.tags)
        args += (
            letter.entry_id, fresh.id, fresh.workspace, env.encode(fresh), linked, fresh.priority,
        )  # fmt: skip
    reply = await _REPLAY(
        client,
        [
            keys.dead,
            keys.stream,
            keys.jobs,
            keys.stats,
            keys.keyed,
            keys.tagged,
            keys.backlog,
            keys.share,
        ],
        args,
    )
    assert isinstance(reply, int)
    return reply


async def newest_letter(client: Redis, keys: PartitionKeys) -> str:
    """The id of the newest dead letter ("0-0": none)."""
    with wrap_unavailable():
        entries: Any = await client.xrevrange(keys.dead, count=1)
    return entries[0][0].decode() if entries else "0-0"


async def purge(client: Redis, keys: PartitionKeys, letters: Sequence[DeadLetter]) -> int:
    """Delete `letters` and their jobs' records for good; returns how many."""
    if not letters:
        return 0
    args: list[Arg] = []
    for letter in letters:
        args += (letter.entry_id, letter.envelope.id)
    reply = await _PURGE(client, [keys.dead, keys.jobs, keys.stats], args)
    assert isinstance(reply, int)
    return reply
