"""The function catalogue from the runtime's side: what workers write of their
functions (`announce`), and the registry a publisher builds from it without
importing any handler (`registry`, behind `Client.from_catalogue`).

A catalogue function's input is checked by its worker, not at publish: the data
(a JSON object: a dict, or a Struct) is sent as it is, within the function's
payload limit, and a job its input type refuses is dead-lettered with msgspec's
message naming the field (the input's JSON Schema is in the entry for a
publisher that wants to check first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import msgspec

from sluice.runtime.declare import Batch, Function, Options
from sluice.runtime.errors import ConfigurationError
from sluice.runtime.registry import Registry
from sluice.streams import catalogue, layouts
from sluice.streams import envelope as env
from sluice.streams.connection import Redis


def entry_of(fn: Function[Any]) -> catalogue.Entry:
    return catalogue.Entry(
        name=fn.name,
        topics=fn.options.topics,
        schema=msgspec.json.schema(fn.input),
        partitions=fn.options.partitions,
        share=fn.options.share,
        max_payload_bytes=fn.options.max_payload_bytes,
        written_ms=env.now_ms(),
    )


async def announce(client: Redis, functions: Sequence[Function[Any]]) -> None:
    """Write the entries of `functions` (a worker's, at start). A partition count
    the entry held before joins the function's layouts first (streams.layouts), so
    the jobs its partitions hold are drained (runtime.worker.drains) even when the
    workers that wrote it came from a release that kept no layouts."""
    before = await catalogue.partitions(client, [fn.name for fn in functions])
    for fn in functions:
        await layouts.remember(
            client, fn.name, {fn.options.partitions, before.get(fn.name, fn.options.partitions)}
        )
    await catalogue.write(client, [entry_of(fn) for fn in functions])


async def registry(client: Redis) -> Registry:
    """The functions of the catalogue, as a registry for publishing (and for `Jobs`,
    `DeadLetters` and the like): their handlers run only in the workers."""
    return Registry(_function(entry) for entry in await catalogue.read(client))


def _function(entry: catalogue.Entry) -> Function[Any]:
    async def elsewhere(batch: Batch[Any]) -> None:
        raise ConfigurationError(
            f"{entry.name} is known from the catalogue: its handler runs in its workers"
        )

    options = Options(
        partitions=entry.partitions,
        workspace_share=entry.share,
        max_payload_bytes=entry.max_payload_bytes,
        topics=entry.topics,
    )
    # Any JSON object goes (runtime.client.publish.encode_input): its worker checks it.
    return Function(entry.name, cast("type[Any]", dict), elsewhere, options, batched=False)
