"""`whatsapp.send`: one WhatsApp message per job, a text or an approved template.

Providers (`SLUICE_WHATSAPP_PROVIDER`):
- `cloud`: the WhatsApp Business Cloud API (a JSON POST to
  `{SLUICE_WHATSAPP_BASE_URL}/{phone-number-id}/messages`, bearer token).
- `callback`: the message as JSON to the deployment's own endpoint, signed the
  Standard Webhooks way (functions/callback.py).
- `log`: a log line and nothing sent; `sluice dev`'s default. A worker with no
  provider configured logs too, and warns once at start.

A text reaches only a customer who wrote within the last 24 hours; outside that
window WhatsApp takes templates only (Meta answers code 131047, and the job is
rejected). The job's result holds the provider's message id (`wamid...`).
Failures settle as for every provider (functions/provider.py), and Meta's
"not now" codes (throughput and pair rate limits, a temporary outage), which
it answers with a 400, are retried with backoff rather than rejected. Rate:
80 messages a second, the Cloud API's default throughput for one number.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Annotated, Any, Literal

import msgspec

from functions import callback
from functions.callback import Accepted
from functions.provider import post
from functions.sms import Phone
from sluice.runtime import Job, WhatsAppSettings, current_settings, e164, function

log = logging.getLogger(__name__)

# Meta's error codes that mean "later": too many calls (4), rate limits (80007,
# 130429), the pair rate limit (131056), something went wrong (131000), service
# unavailable (131016), server temporarily unavailable (133004).
BUSY_CODES = frozenset({4, 80007, 130429, 131056, 131000, 131016, 133004})


class Template(msgspec.Struct, frozen=True, kw_only=True):
    name: Annotated[
        str, msgspec.Meta(min_length=1, max_length=512, description="An approved template's name")
    ]
    language: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$", description="Its language: en_US, de, pt_BR, ..."
        ),
    ] = "en_US"
    parameters: Annotated[
        tuple[Annotated[str, msgspec.Meta(max_length=1024)], ...],
        msgspec.Meta(max_length=100, description="The body's {{1}}, {{2}}, ... in order, as text"),
    ] = ()
    components: Annotated[
        tuple[dict[str, Any], ...],
        msgspec.Meta(
            max_length=20,
            description="Further Cloud API template components (header, buttons), sent as given",
        ),
    ] = ()


class WhatsApp(msgspec.Struct, frozen=True, kw_only=True):
    to: Phone
    text: Annotated[
        str,
        msgspec.Meta(
            max_length=4096,
            description="A text message (to a customer who wrote within 24 hours); "
            "give this or `template`",
        ),
    ] = ""
    template: Annotated[
        Template | None, msgspec.Meta(description="An approved template; this or `text`")
    ] = None
    preview_url: Annotated[
        bool, msgspec.Meta(description="Show a preview of the text's first link")
    ] = False
    metadata: Annotated[
        dict[str, Any],
        msgspec.Meta(description="The sender's own data about the message, kept with the job"),
    ] = {}

    def __post_init__(self) -> None:
        if bool(self.text) == (self.template is not None):
            raise ValueError("give `text` or `template`, one of them")
        msgspec.structs.force_setattr(self, "to", e164(self.to, "to"))


class Delivered(msgspec.Struct, frozen=True):
    """The job's result: who took the message and its id there."""

    provider: str
    message_id: str
    # As the provider reported it ("accepted"); empty when it said none.
    status: str = ""


def _say_if_unconfigured() -> None:
    """At a worker's start: with no provider, its messages go nowhere."""
    if not current_settings().whatsapp.provider:
        log.warning(
            "whatsapp.send: no WhatsApp provider configured (SLUICE_WHATSAPP_PROVIDER): "
            "messages are only logged"
        )


@function(
    "whatsapp.send",
    input=WhatsApp,
    example=WhatsApp(
        to="+15550100",
        template=Template(name="appointment_reminder", parameters=("Ada", "tomorrow 10:00")),
    ),
    on_start=_say_if_unconfigured,
    concurrency=32,
    rate_per_s=80,
    timeout_s=30,
    attempts=5,
    backoff_base_s=2,
    backoff_cap_s=300,
)
async def send_whatsapp(job: Job[WhatsApp]) -> Delivered:
    config = current_settings().whatsapp
    message = job.data
    if config.provider in ("", "log"):
        what = f"template {message.template.name}" if message.template else message.text
        log.info("whatsapp %s to %s (workspace %s): %s", job.id, message.to, job.workspace, what)
        return Delivered("log", job.id)
    if config.provider == "cloud":
        accepted = await _cloud(config, message)
    else:
        payload = msgspec.json.encode(
            CallbackMessage(
                id=job.id,
                workspace=job.workspace,
                attempt=job.attempt,
                **msgspec.structs.asdict(message),
            )
        )
        accepted = await callback.deliver(
            config.callback_url, config.callback_key, config.timeout_s, job.id, payload
        )
    return Delivered(config.provider, accepted.message_id, accepted.status)


class CallbackMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What the `callback` provider POSTs to the deployment's endpoint."""

    id: str
    workspace: str
    attempt: int
    to: str
    text: str
    template: Template | None
    preview_url: bool
    metadata: dict[str, Any]
    channel: Literal["whatsapp"] = "whatsapp"


class _Text(msgspec.Struct):
    body: str
    preview_url: bool


class _Language(msgspec.Struct):
    code: str


class _Parameter(msgspec.Struct):
    text: str
    type: Literal["text"] = "text"


class _Component(msgspec.Struct):
    parameters: list[_Parameter]
    type: Literal["body"] = "body"


class _Template(msgspec.Struct):
    name: str
    language: _Language
    components: list[Any]


class _CloudMessage(msgspec.Struct, omit_defaults=True):
    """The Cloud API's message object; `text` or `template` per `type`."""

    messaging_product: Literal["whatsapp"]
    recipient_type: Literal["individual"]
    to: str
    type: Literal["text", "template"]
    text: _Text | None = None
    template: _Template | None = None


class _MessageId(msgspec.Struct):
    id: str
    message_status: str = ""


class _CloudAnswer(msgspec.Struct):
    messages: list[_MessageId] = []


_cloud_answer = msgspec.json.Decoder(_CloudAnswer)


def cloud_message(message: WhatsApp) -> _CloudMessage:
    if message.template is None:
        text = _Text(message.text, message.preview_url)
        return _CloudMessage("whatsapp", "individual", message.to, "text", text=text)
    template = message.template
    components: list[Any] = list(template.components)
    if template.parameters:
        components.append(_Component([_Parameter(p) for p in template.parameters]))
    cloud = _Template(template.name, _Language(template.language), components)
    return _CloudMessage("whatsapp", "individual", message.to, "template", template=cloud)


async def _cloud(config: WhatsAppSettings, message: WhatsApp) -> Accepted:
    number = urllib.parse.quote(config.phone_number_id, safe="")
    answer = await post(
        "whatsapp",
        f"{config.base_url.rstrip('/')}/{number}/messages",
        timeout_s=config.timeout_s,
        body=msgspec.json.encode(cloud_message(message)),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {config.access_token}",
        },
        busy_codes=BUSY_CODES,
    )
    try:
        found = _cloud_answer.decode(answer)
    except msgspec.DecodeError:
        found = _CloudAnswer()
    if not found.messages:
        # Sent all the same: a retry would message the customer twice.
        log.warning("whatsapp accepted a message without naming it: %r", answer[:200])
        return Accepted()
    return Accepted(found.messages[0].id, found.messages[0].message_status)
