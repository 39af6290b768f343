"""What `booking.remind` and `payment.remind` share: the contact and its channels,
messages from templates, and replacing one thing's reminders.

A thing's reminders (a booking's, an invoice's) are the jobs of one tag
(`booking:<id>`) on the channel functions, each with a business key naming its
channel and step. Publishing the thing again replaces them all: the tag's jobs
that have not started are cancelled, then the new set is published. A retried
handler therefore leaves one set, not two, and a moved booking keeps no reminder
of its old time, nor of an offset or channel it no longer has. Two runs for the
same thing at once end with the keys' one job each (a key's publish replaces its
unstarted job), though a step only the earlier run had may stay: publish the
thing with a business key of its own, so a newer version replaces an older
that has not run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from functions.email import Address
from functions.sms import Phone
from sluice.runtime import Event, Reject, current_client, e164

Channel = Literal["sms", "email", "whatsapp"]
# The function each channel's reminders are published to.
FUNCTIONS: dict[str, str] = {"sms": "sms.send", "email": "email.send", "whatsapp": "whatsapp.send"}

# At most 100 characters, so a key ("payment:<id>:whatsapp:-365") stays a token.
ThingId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_.\-]{1,100}$",
        description="Its id in the sender's records: 1-100 of A-Z a-z 0-9 _ . -",
    ),
]
Channels = Annotated[
    tuple[Channel, ...],
    msgspec.Meta(min_length=1, max_length=3, description="sms, email and/or whatsapp"),
]
# "{name}" and the like; any other braces are text.
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """Whom the reminders reach: a phone for sms and whatsapp, an address for email."""

    phone: Phone | None = None
    email: Address | None = None

    def __post_init__(self) -> None:
        if self.phone is not None:
            msgspec.structs.force_setattr(self, "phone", e164(self.phone, "contact.phone"))


class Messages(msgspec.Struct, frozen=True, kw_only=True):
    """The reminders' wording; empty: the function's own. Placeholders in braces
    (`{name}`, `{when}`, ...) are filled per reminder; the function says which it has."""

    text: Annotated[
        str, msgspec.Meta(max_length=1000, description="The SMS, the WhatsApp text, the email body")
    ] = ""
    subject: Annotated[
        str, msgspec.Meta(max_length=200, pattern=r"^[^\r\n]*$", description="The email subject")
    ] = ""
    whatsapp_template: Annotated[
        str,
        msgspec.Meta(
            max_length=512,
            description="An approved WhatsApp template to send instead of `text` (WhatsApp "
            "takes only templates from a business outside a 24-hour window)",
        ),
    ] = ""
    whatsapp_language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")] = "en_US"


def check(contact: Contact, channels: Sequence[str], messages: Messages, known: set[str]) -> None:
    """At publish: each channel has its contact, each placeholder is one of `known`.
    Raises ValueError, which msgspec makes a validation error (a 4xx over HTTP)."""
    if len(set(channels)) != len(channels):
        raise ValueError("`channels` names a channel twice")
    if ("sms" in channels or "whatsapp" in channels) and contact.phone is None:
        raise ValueError("sms and whatsapp reminders need `contact.phone`")
    if "email" in channels and contact.email is None:
        raise ValueError("email reminders need `contact.email`")
    for field in ("text", "subject"):
        unknown = set(_PLACEHOLDER.findall(getattr(messages, field))) - known
        if unknown:
            names = ", ".join(f"{{{name}}}" for name in sorted(unknown))
            raise ValueError(f"`messages.{field}` has unknown placeholders {names}")


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with its placeholders replaced (plain substitution: a template is
    the sender's text, never code, so not `str.format`)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), template)


def local(at: datetime) -> str:
    """A time as a reminder shows it, in its own zone: `Sun 28 Mar 2027, 10:00 CEST`."""
    return at.strftime("%a %d %b %Y, %H:%M %Z").strip()


class Reminder(msgspec.Struct, frozen=True):
    """One reminder to publish: the channel's input, when, and until when it is worth sending."""

    channel: Channel
    # Its place in the thing's sequence, in the key: seconds before a booking,
    # days from an invoice's due date.
    step: int
    # Both in UTC.
    due: datetime
    expires: datetime
    # The channel function's input as JSON-like data, checked against its type by
    # the publish (a Struct built here would skip its constraints).
    data: dict[str, Any]


def message(
    channel: Channel,
    contact: Contact,
    messages: Messages,
    text: str,
    subject: str,
    parameters: tuple[str, ...],
) -> dict[str, Any]:
    """The channel's input for one reminder; `parameters` fill a WhatsApp template's body."""
    if channel == "email":
        return {"to": contact.email, "subject": subject, "text": text}
    if channel == "sms":
        return {"to": contact.phone, "body": text}
    if messages.whatsapp_template:
        template = {
            "name": messages.whatsapp_template,
            "language": messages.whatsapp_language,
            "parameters": parameters,
        }
        return {"to": contact.phone, "template": template}
    return {"to": contact.phone, "text": text}


class Scheduled(msgspec.Struct, frozen=True):
    """A reminder published: its channel, step, due time (UTC) and job id."""

    channel: str
    step: int
    due: datetime
    id: str


class Replaced(msgspec.Struct, frozen=True):
    """The job's result: the reminders published, those skipped as already due,
    and how many earlier ones (of a previous version, or attempt) were cancelled."""

    reminders: list[Scheduled]
    skipped: int
    cancelled: int


async def replace(workspace: str, tag: str, reminders: Sequence[Reminder]) -> Replaced:
    """Cancel the tag's reminders that have not started, then publish `reminders`
    still in the future, each keyed `<tag>:<channel>:<step>` and tagged `tag`.

    The new set is checked first: one its channel refuses (a text longer than an
    SMS may be, a time past the horizon) rejects the job, retrying cannot help,
    and leaves the reminders it has untouched.
    """
    client = current_client()
    deployed = [name for name in FUNCTIONS.values() if name in client.registry.by_name]
    missing = sorted({FUNCTIONS[r.channel] for r in reminders} - set(deployed))
    if missing:
        raise Reject(f"this deployment has no {', '.join(missing)} for the reminders")
    now = datetime.now(UTC)
    ahead = [r for r in reminders if r.due > now]
    batches = []
    for channel, function in FUNCTIONS.items():
        mine = [r for r in ahead if r.channel == channel]
        events = [
            Event(
                workspace=workspace,
                data=r.data,
                run_at=r.due,
                expires_at=r.expires,
                key=f"{tag}:{channel}:{r.step}",
                tags=(tag,),
            )
            for r in mine
        ]
        try:
            client.prepare(function, events)  # checks, writes nothing
        except ValueError as exc:
            raise Reject(f"a reminder {function} refuses: {exc}") from None
        if mine:
            batches.append((function, mine, events))
    old = await client.jobs.cancel_tag(tag, workspace=workspace, functions=deployed)
    scheduled: list[Scheduled] = []
    for function, mine, events in batches:
        receipts = await client.publish_many(function, events)
        scheduled += [
            Scheduled(r.channel, r.step, r.due, receipt.id)
            for r, receipt in zip(mine, receipts, strict=True)
        ]
    return Replaced(scheduled, len(reminders) - len(ahead), len(old.cancelled))


class Cancelled(msgspec.Struct, frozen=True):
    """The result of cancelling a thing's reminders: the jobs cancelled, and those
    already running (they finish)."""

    cancelled: int
    running: int


async def cancel(workspace: str, tag: str) -> Cancelled:
    """Cancel every job of `tag` that has not started, in every function: the
    reminders, and a pending publish of the thing the sender tagged the same."""
    old = await current_client().jobs.cancel_tag(tag, workspace=workspace)
    return Cancelled(len(old.cancelled), len(old.running))
