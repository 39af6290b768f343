"""A page's job records are read side by side, within the connections Redis gives:
on a cluster too, whose client refuses a call past its pool instead of waiting."""

from __future__ import annotations

import pytest

from sluice.runtime import Client, Jobs
from sluice.runtime.registry import load
from tests.conftest import BOTH, Target
from tests.runtime.helpers import SAMPLE


@pytest.mark.parametrize("target", BOTH, indirect=True)
async def test_a_page_of_more_jobs_than_connections_is_read(target: Target) -> None:
    registry = load(SAMPLE)
    client, jobs = Client(target.redis, registry), Jobs(target.redis, registry)
    hour = 3_600_000
    # One partition, so one node holds them all: 150 records past a pool of 64.
    for i in range(150):
        await client.publish("tasks", workspace="acme", data={"n": i}, delay_ms=hour)
    page = await jobs.page("tasks", "delayed", limit=150)
    assert len(page.jobs) == 150
    everywhere = await jobs.page(None, "delayed", workspace="acme", limit=150)
    assert len(everywhere.jobs) == 150
