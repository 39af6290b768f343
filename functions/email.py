"""Send email in batches per workspace, the way bulk email APIs take them."""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec

from runtime import Batch, batch_function

log = logging.getLogger(__name__)


class Email(msgspec.Struct, frozen=True):
    to: Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+$")]
    subject: Annotated[str, msgspec.Meta(max_length=998)]
    html: str
    # The recipient in the sender's own records, if it has one.
    contact_id: str = ""


@batch_function(
    "email.send",
    input=Email,
    example=Email(to="ada@example.com", subject="Welcome", html="<p>Hello!</p>"),
    batch_size=100,
)
async def send_email(batch: Batch[Email]) -> None:
    recipients = ", ".join(job.data.to for job in batch.jobs)
    log.info("email batch of %d for workspace %s: %s", len(batch), batch.workspace, recipients)
