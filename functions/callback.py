"""The channels' `callback` provider: each message as JSON to the deployment's own
endpoint, signed the Standard Webhooks way (functions/signing.py), for a team
whose app already sends through its own provider account.

Its answer settles the job as any provider's does (functions/provider.py); a 2xx
may name the message id and status (`{"message_id": "...", "status": "..."}`),
else the job's id stands for it.
"""

from __future__ import annotations

import msgspec

from functions.provider import post
from functions.signing import signed_headers


class Accepted(msgspec.Struct, frozen=True):
    message_id: str = ""
    status: str = ""


_accepted = msgspec.json.Decoder(Accepted)


async def deliver(url: str, key: bytes, timeout_s: float, job_id: str, payload: bytes) -> Accepted:
    """POST `payload` (the message, JSON) signed as message `job_id`: the same id on
    every retry, so the receiver can drop a second delivery of one message."""
    answer = await post(
        "callback",
        url,
        timeout_s=timeout_s,
        body=payload,
        headers={"Content-Type": "application/json", **signed_headers(key, job_id, payload)},
    )
    try:
        found = _accepted.decode(answer) if answer.strip() else Accepted()
    except msgspec.DecodeError:
        # Any 2xx is a delivery, whatever its body says.
        found = Accepted()
    return Accepted(found.message_id or job_id, found.status)
