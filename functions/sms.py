"""`sms.send`: one SMS per job, through the provider the deployment configures.

Providers (`SLUICE_SMS_PROVIDER`):
- `twilio`: Twilio's Messages API (a form POST to
  `{SLUICE_TWILIO_BASE_URL}/2010-04-01/Accounts/{sid}/Messages.json`, basic auth);
  any provider that speaks that API works through the base URL.
- `callback`: a POST of the message as JSON to the deployment's own endpoint
  (`SLUICE_SMS_CALLBACK_URL`), signed the Standard Webhooks way (functions/signing.py);
  its 2xx answer may name the message id (`{"message_id": "..."}`).
- `log`: a log line and nothing sent; `sluice dev`'s default. A worker with no
  provider configured logs too, and warns once that nothing is delivered.

The job's result holds the provider's message id and the segments the body
takes (functions/segments.py). How a provider's answer settles the job (retry
after its Retry-After, reject a bad number at once, retry timeouts) is in
functions/provider.py. Rate: 50 messages a second for the deployment, changed
by `SLUICE_RATES=sms.send=...`, or at run time with `Limits.set_global("sms.send",
...)` or per workspace.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Annotated, Any, Literal

import msgspec

from functions import callback
from functions.callback import Accepted
from functions.provider import basic_auth, post
from functions.segments import Encoding, Segments, count_segments
from sluice.runtime import Job, Reject, SmsSettings, current_settings, e164, function

log = logging.getLogger(__name__)

# Normalised to E.164 in the input's __post_init__ (runtime.e164): a national
# number is read in SLUICE_SMS_DEFAULT_REGION where the publisher has it.
Phone = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description="A phone number: E.164 (+ and country code), or national in the "
        "deployment's SLUICE_SMS_DEFAULT_REGION; stored as E.164",
    ),
]
MediaUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$", max_length=2048)]


class Sms(msgspec.Struct, frozen=True, kw_only=True):
    to: Phone
    body: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=1600,
            description="The text; longer than one SMS (160 GSM-7 or 70 UCS-2 characters) "
            "it is sent in segments, each billed",
        ),
    ]
    sender: Annotated[
        str,
        msgspec.Meta(
            max_length=64,
            description="The sender: an E.164 number, an alphanumeric sender id, or a Twilio "
            "messaging service (MG...); empty: the deployment's SLUICE_SMS_FROM",
        ),
    ] = msgspec.field(default="", name="from")
    media_urls: Annotated[
        tuple[MediaUrl, ...],
        msgspec.Meta(max_length=10, description="Images and files to attach (MMS), at most 10"),
    ] = ()
    metadata: Annotated[
        dict[str, Any],
        msgspec.Meta(description="The sender's own data about the message, kept with the job"),
    ] = {}

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "to", e164(self.to, "to"))


class Sent(msgspec.Struct, frozen=True):
    """The job's result: who took the message, its id there, and what it costs."""

    provider: str
    message_id: str
    segments: int
    encoding: Encoding
    # As the provider reported it ("queued", "accepted"); empty when it said none.
    status: str = ""


def _say_if_unconfigured() -> None:
    """At a worker's start: with no provider, its messages go nowhere."""
    if not current_settings().sms.provider:
        log.warning(
            "sms.send: no SMS provider configured (SLUICE_SMS_PROVIDER): messages are only logged"
        )


@function(
    "sms.send",
    input=Sms,
    example=Sms(to="+15550100", body="Your appointment is tomorrow at 10:00."),
    on_start=_say_if_unconfigured,
    concurrency=32,
    rate_per_s=50,
    timeout_s=30,
    attempts=5,
    backoff_base_s=2,
    backoff_cap_s=300,
)
async def send_sms(job: Job[Sms]) -> Sent:
    config = current_settings().sms
    sms = job.data
    segments = count_segments(sms.body)
    if config.provider in ("", "log"):
        log.info("sms %s to %s (workspace %s): %s", job.id, sms.to, job.workspace, sms.body)
        return Sent("log", job.id, segments.count, segments.encoding)
    if config.provider == "twilio":
        accepted = await _twilio(config, sms)
    else:
        accepted = await _callback(config, job, segments)
    return Sent(
        config.provider, accepted.message_id, segments.count, segments.encoding, accepted.status
    )


class _TwilioMessage(msgspec.Struct):
    sid: str
    status: str = ""


_twilio_message = msgspec.json.Decoder(_TwilioMessage)


async def _twilio(config: SmsSettings, sms: Sms) -> Accepted:
    sender = sms.sender or config.sender
    if not sender:
        raise Reject("no sender: give `from` or set SLUICE_SMS_FROM")
    # A messaging service picks the number itself (Twilio's MG... sids).
    sender_field = "MessagingServiceSid" if sender.startswith("MG") else "From"
    fields = [("To", sms.to), (sender_field, sender), ("Body", sms.body)]
    fields += [("MediaUrl", url) for url in sms.media_urls]
    sid = urllib.parse.quote(config.twilio_account_sid, safe="")
    answer = await post(
        "twilio",
        f"{config.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json",
        timeout_s=config.timeout_s,
        body=urllib.parse.urlencode(fields).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": basic_auth(config.twilio_account_sid, config.twilio_auth_token),
        },
    )
    try:
        message = _twilio_message.decode(answer)
    except msgspec.DecodeError:
        # Sent all the same: a retry would text the recipient twice.
        log.warning("twilio accepted a message without naming it: %r", answer[:200])
        return Accepted()
    return Accepted(message.sid, message.status)


class CallbackMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What the `callback` provider POSTs to the deployment's endpoint."""

    # The job's id: the same on every retry (and the webhook-id), so the
    # receiver can drop a second delivery of one message.
    id: str
    workspace: str
    attempt: int
    to: str
    sender: str = msgspec.field(name="from")
    body: str
    media_urls: tuple[str, ...]
    metadata: dict[str, Any]
    segments: int
    encoding: Encoding
    channel: Literal["sms"] = "sms"


async def _callback(config: SmsSettings, job: Job[Sms], segments: Segments) -> Accepted:
    sms = job.data
    message = CallbackMessage(
        id=job.id,
        workspace=job.workspace,
        attempt=job.attempt,
        to=sms.to,
        sender=sms.sender or config.sender,
        body=sms.body,
        media_urls=sms.media_urls,
        metadata=sms.metadata,
        segments=segments.count,
        encoding=segments.encoding,
    )
    payload = msgspec.json.encode(message)
    return await callback.deliver(
        config.callback_url, config.callback_key, config.timeout_s, job.id, payload
    )
