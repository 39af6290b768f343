"""Send one SMS per job. The provider call is a log line until a provider is configured."""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec

from runtime import Job, function

log = logging.getLogger(__name__)

Phone = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164 number")]


class Sms(msgspec.Struct, frozen=True):
    to: Phone
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=1600)]
    # The sender's own data about the message, kept with the job.
    metadata: dict[str, str | int | float | bool | None] = {}


@function(
    "sms.send",
    input=Sms,
    example=Sms(to="+15550100", body="Your appointment is tomorrow at 10:00."),
    concurrency=32,
)
async def send_sms(job: Job[Sms]) -> None:
    log.info("sms %s to %s (workspace %s): %s", job.id, job.data.to, job.workspace, job.data.body)
