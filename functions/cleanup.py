"""`sluice.cleanup`: daily housekeeping of Sluice's own data in Redis.

The scripts bound what grows with the jobs (finished records by retention,
dead letters as new ones come, deferral histories to 20 seconds); this removes
what nothing else does (runtime.client.housekeeping): dead letters past their
function's `dead_retention_s` in a function that stopped failing, consumers of
worker processes gone for a day (`consumer_idle_s`) that hold no job (a running
worker's reclaimer does this for its own functions, not for a function no
worker runs any more), every workspace's rate-limiter state once it has
lapsed, and rate-limit deferral records of workspaces not deferred for
`deferrals_s`. Its result counts what went, per function.

Not removed: catalogue entries (a worker writes its function's at start only,
so a worker running for months has an old one that is still true).

Run it daily with a schedule: `sluice schedules add sluice.cleanup daily
--workspace ops --cron "0 4 * * *" --zone UTC --data '{}'`.

Failures: Redis unavailable retries it (3 attempts); what one run removed
stays removed, and the next run removes the rest.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from sluice.runtime import Housekeeping, Job, Swept, current_client, function

DAY_S = 86_400


class Cleanup(msgspec.Struct, frozen=True, kw_only=True):
    consumer_idle_s: Annotated[
        int,
        msgspec.Meta(
            ge=3600,
            description="Delete a consumer idle this long that holds no job (a worker gone)",
        ),
    ] = DAY_S
    deferrals_s: Annotated[
        int,
        msgspec.Meta(
            ge=3600,
            description="Forget a workspace's rate-limit deferral record (`Limits`) this "
            "long after its last deferral",
        ),
    ] = 30 * DAY_S


class Cleaned(msgspec.Struct, frozen=True):
    """The job's result: what was removed, in all and per function."""

    total: Swept
    functions: dict[str, Swept]


@function("sluice.cleanup", input=Cleanup, example=Cleanup(), timeout_s=600, attempts=3)
async def cleanup(job: Job[Cleanup]) -> Cleaned:
    client = current_client()
    removed = await Housekeeping(client.redis, client.registry).clean(
        consumer_idle_s=job.data.consumer_idle_s, deferrals_s=job.data.deferrals_s
    )
    total = Swept()
    for swept in removed.values():
        total += swept
    return Cleaned(total, removed)
