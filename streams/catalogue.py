"""The function catalogue: what a publisher needs to know of each function, without
its handler (name, topics, input schema, partitions, share, payload limit).

One HASH (`keys.CATALOGUE`), function name -> JSON entry, readable with redis-cli.
Workers write their functions' entries at start; an entry stays until a worker
of that name writes it again (a function no longer deployed keeps its last one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable
from sluice.streams.keys import CATALOGUE


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One function as publishers see it; new fields get defaults (entries outlive
    releases: an older worker's entry must still read)."""

    name: str
    # Extra topics routed to it (its own name routes to it too).
    topics: tuple[str, ...] = ()
    # JSON Schema of its input (msgspec.json.schema), for a publisher to show or check.
    schema: dict[str, Any] = {}
    partitions: int = 1
    # Unread jobs of one workspace its stream holds (runtime.declare.Options.share).
    share: int = 100
    max_payload_bytes: int = 256 * 1024
    # When a worker last wrote it (its clock, epoch ms).
    written_ms: int = 0


_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Entry)


async def write(client: Redis, entries: Sequence[Entry]) -> None:
    if not entries:
        return
    with wrap_unavailable():
        await client.hset(CATALOGUE, mapping={e.name: _encode(e) for e in entries})


async def partitions(client: Redis, names: Sequence[str]) -> dict[str, int]:
    """The partition counts the entries of `names` hold (those that have one)."""
    if not names:
        return {}
    with wrap_unavailable():
        stored = await client.hmget(CATALOGUE, list(names))
    found = {}
    for name, raw in zip(names, stored, strict=True):
        if raw is None:
            continue
        try:
            found[name] = _decoder.decode(raw).partitions
        except msgspec.ValidationError:
            continue  # of a release that changed a field's type
    return found


async def read(client: Redis) -> list[Entry]:
    """Every entry, by name; one that does not decode (written by a release that
    changed a field's type) is left out rather than failing the others."""
    with wrap_unavailable():
        stored = await client.hgetall(CATALOGUE)
    entries = []
    for name in sorted(stored):
        try:
            entries.append(_decoder.decode(stored[name]))
        except msgspec.ValidationError:
            continue
    return entries
