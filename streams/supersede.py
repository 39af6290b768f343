"""What a publish finds of its jobs in a partition of its function's earlier layout
(streams.layouts): ids already there, and business keys whose jobs there it replaces.

Called, for the jobs with a given id or a key, on the workspace's partition of
each earlier layout before they are written in the current one: that partition
is another slot on a cluster, so this is a call of its own, not a part of the
publish's script (runtime.client.layouts says what is left to chance).
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.streams.connection import Redis
from sluice.streams.keys import GROUP, PartitionKeys
from sluice.streams.lua import Arg, Script
from sluice.streams.publish import DEFAULT_SHARE

_SUPERSEDE = Script.beside(__file__, "supersede.lua", uses=["record", "admit", "links"])


async def supersede(
    client: Redis,
    keys: PartitionKeys,
    jobs: Sequence[tuple[str, str]],
    share: int = DEFAULT_SHARE,
) -> set[str]:
    """For `jobs` (stored id, key field "workspace/key" or "") to be published
    elsewhere: returns the ids that are jobs in `keys`' partition (duplicates, to
    be left unwritten). A job a key names here is replaced if it has not started,
    else the key leaves it (as a publish in one partition does: publish.lua)."""
    if not jobs:
        return set()
    args: list[Arg] = [GROUP, share]
    for job_id, keyfield in jobs:
        args += (job_id, keyfield)
    reply = await _SUPERSEDE(
        client,
        [
            keys.stream,
            keys.stats,
            keys.jobs,
            keys.delayed,
            keys.keyed,
            keys.tagged,
            keys.backlog,
            keys.share,
        ],
        args,
    )
    assert isinstance(reply, list)
    return {job_id for (job_id, _), found in zip(jobs, reply, strict=True) if found}
