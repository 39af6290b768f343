"""`campaign.launch` and `campaign.cancel`: messages to a contact list, day by day.

`campaign.launch` takes a campaign's steps ("day 1 at 09:00: this SMS") and its
contacts, inline or as pages fetched from a URL (functions/contacts.py), and
publishes one `sms.send`, `email.send` or `whatsapp.send` job per step and
contact, due on the start date plus the step's day, at its wall-clock time in
the campaign's zone: 09:00 stays 09:00 on the wall across a change of the
clocks, and a time the clocks skip moves forward by the gap (runtime's
`LocalTime`). Every job is tagged `campaign:<id>`, so `campaign.cancel` (or
`Jobs.cancel_tag`) cancels what has not started, and `Jobs.tag_counts` reads
what is still to go. Each job's id is `<campaign>:<step>:<contact>`, so a
retried launch, or the same campaign launched twice, finds the jobs it wrote
and adds none. A message more than `late_s` after its time is not sent (it
expires); steps already that late at launch are skipped.

Jobs go out a chunk at a time (`publish_many`, CHUNK events a call), after the
whole list was checked against the channels' input types: a message a channel
refuses rejects the launch before anything is written.

Failures: bad steps, an unknown zone or neither (or both) contact sources are
refused at publish; a contact without the phone or address a step needs is
skipped (counted); a contacts URL the SSRF guard refuses, a page that is not
JSON in the expected shape, a channel function the deployment lacks or a
message its channel refuses rejects the job; a contacts server that fails or
times out, or Redis unavailable, retries it (5 attempts).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from functions import contacts, reminders
from functions.contacts import Recipient
from functions.reminders import Channel, Messages
from sluice.runtime import Event, Job, LocalTime, Reject, current_client, function, instant

# Events per publish_many: each call is checked and written on its own, so a
# campaign of 100,000 messages is never one list in one call.
CHUNK = 5000
CampaignId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_.\-]{1,40}$",
        description="The campaign's id in the sender's records: 1-40 of A-Z a-z 0-9 _ . -",
    ),
]


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One message of the campaign, sent to every contact."""

    day: Annotated[int, msgspec.Meta(ge=0, le=365, description="Days after `start` (0: on it)")]
    at: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
            description="Wall-clock time in the campaign's zone, `HH:MM`",
        ),
    ]
    channel: Channel
    text: Annotated[
        str,
        msgspec.Meta(
            max_length=1600,
            description="The SMS, the WhatsApp text or the email body; placeholders "
            "{name} and the contact's `fields` ({first_name}, ...)",
        ),
    ] = ""
    subject: Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\r\n]*$")] = ""
    whatsapp_template: Annotated[
        str,
        msgspec.Meta(
            max_length=512,
            description="An approved WhatsApp template instead of `text`; its parameter "
            "is the contact's name",
        ),
    ] = ""
    whatsapp_language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")] = "en_US"

    def __post_init__(self) -> None:
        if not self.text and not (self.channel == "whatsapp" and self.whatsapp_template):
            raise ValueError("a step needs `text` (or, for whatsapp, `whatsapp_template`)")


class Campaign(msgspec.Struct, frozen=True, kw_only=True):
    id: CampaignId
    zone: Annotated[
        str, msgspec.Meta(description="The workspace's time zone (IANA): `Europe/Berlin`")
    ]
    start: Annotated[date, msgspec.Meta(description="Day 0 of the steps, in the zone")]
    steps: Annotated[tuple[Step, ...], msgspec.Meta(min_length=1, max_length=20)]
    contacts: (
        Annotated[
            tuple[Recipient, ...],
            msgspec.Meta(max_length=20_000, description="The contacts, inline; or `contacts_url`"),
        ]
        | None
    ) = None
    contacts_url: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=2000,
                description='A URL answering pages of contacts, `{"contacts": [...], "next": '
                "<URL or null>}`; each page's host passes the SSRF guard (SLUICE_WEBHOOK_ALLOW)",
            ),
        ]
        | None
    ) = None
    late_s: Annotated[
        int,
        msgspec.Meta(
            ge=60,
            le=7 * 86_400,
            description="How late a message may still go; later it expires, unsent",
        ),
    ] = 6 * 3600

    def __post_init__(self) -> None:
        if (self.contacts is None) == (self.contacts_url is None):
            raise ValueError("give `contacts` or `contacts_url`, one of the two")
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.zone!r}") from None
        if len({(s.day, s.at, s.channel) for s in self.steps}) != len(self.steps):
            raise ValueError("two steps have the same day, time and channel")

    def due(self, step: Step) -> datetime:
        """When `step` falls due, in UTC: day N at HH:MM on the zone's wall clock."""
        day = self.start + timedelta(days=step.day)
        local = LocalTime(f"{day.isoformat()}T{step.at}", self.zone)
        return instant(local, f"campaign {self.id}", "start").astimezone(UTC)


class CancelCampaign(msgspec.Struct, frozen=True, kw_only=True):
    id: CampaignId


class Launched(msgspec.Struct, frozen=True):
    """The launch's result: jobs written now, found written before (a retry),
    skipped as too late, and contacts a step could not reach (no phone or address)."""

    tag: str
    published: int
    duplicates: int
    late: int
    unreachable: int
    # Jobs (new or found) per channel function: with `Jobs.tag_counts`, the progress.
    jobs: dict[str, int]


def plan(campaign: Campaign, recipients: list[Recipient], now: datetime) -> tuple[
    dict[str, list[Event]], int, int
]:  # fmt: skip
    """The jobs to publish by function, the steps skipped as late and the unreachable."""
    tag = f"campaign:{campaign.id}"
    planned: dict[str, list[Event]] = {}
    late = unreachable = 0
    reach = [(r, r.contact()) for r in recipients]
    for index, step in enumerate(campaign.steps):
        due = campaign.due(step)
        expires = due + timedelta(seconds=campaign.late_s)
        if expires <= now:
            late += len(recipients)
            continue
        messages = Messages(
            text=step.text,
            subject=step.subject,
            whatsapp_template=step.whatsapp_template,
            whatsapp_language=step.whatsapp_language,
        )
        events = planned.setdefault(reminders.FUNCTIONS[step.channel], [])
        for r, contact in reach:
            if (contact.email if step.channel == "email" else contact.phone) is None:
                unreachable += 1
                continue
            values = {"name": r.name, **r.fields}
            data = reminders.message(
                step.channel,
                contact,
                messages,
                reminders.fill(step.text, values),
                reminders.fill(step.subject, values),
                (r.name,),
            )
            events.append(
                Event(
                    workspace="",  # set by launch: the job's own
                    data=data,
                    id=f"{campaign.id}:{index}:{r.id}",
                    run_at=due,
                    expires_at=expires,
                    tags=(tag,),
                    priority="low",
                )
            )
    return planned, late, unreachable


EXAMPLE = Campaign(
    id="spring-sale",
    zone="Europe/Berlin",
    start=date(2030, 3, 29),
    steps=(
        Step(day=0, at="09:00", channel="sms", text="Hi {name}, our spring sale starts today!"),
        Step(
            day=2,
            at="18:30",
            channel="email",
            subject="Last day of the spring sale",
            text="Hi {name}, the sale ends tonight.",
        ),
    ),
    contacts=(
        Recipient(id="c-1", name="Ada", phone="+15550100", email="ada@example.com"),
        Recipient(id="c-2", name="Grace", email="grace@example.com"),
    ),
)


@function(
    "campaign.launch",
    input=Campaign,
    example=EXAMPLE,
    timeout_s=300,
    attempts=5,
    concurrency=2,
    # 20,000 contacts inline; more come from `contacts_url`.
    max_payload_bytes=4 * 1024 * 1024,
)
async def launch_campaign(job: Job[Campaign]) -> Launched:
    campaign = job.data
    recipients = (
        list(campaign.contacts)
        if campaign.contacts is not None
        else await contacts.fetch(campaign.contacts_url or "")
    )
    planned, late, unreachable = plan(campaign, recipients, datetime.now(UTC))
    client = current_client()
    missing = sorted(name for name in planned if name not in client.registry.by_name)
    if missing:
        raise Reject(f"this deployment has no {', '.join(missing)} for the campaign")
    chunks: list[tuple[str, list[Event]]] = []
    for name, events in planned.items():
        mine = [msgspec.structs.replace(e, workspace=job.workspace) for e in events]
        for start in range(0, len(mine), CHUNK):
            chunk = mine[start : start + CHUNK]
            try:
                client.prepare(name, chunk)  # checks, writes nothing
            except ValueError as exc:
                raise Reject(f"a message {name} refuses: {exc}") from None
            chunks.append((name, chunk))
    published = duplicates = 0
    jobs: dict[str, int] = {}
    for name, chunk in chunks:
        receipts = await client.publish_many(name, chunk)
        found = sum(r.duplicate for r in receipts)
        duplicates += found
        published += len(receipts) - found
        jobs[name] = jobs.get(name, 0) + len(receipts)
    return Launched(f"campaign:{campaign.id}", published, duplicates, late, unreachable, jobs)


@function(
    "campaign.cancel", input=CancelCampaign, example=CancelCampaign(id="spring-sale"), attempts=5
)
async def cancel_campaign(job: Job[CancelCampaign]) -> reminders.Cancelled:
    """Cancel the campaign's jobs not yet started, in every function."""
    return await reminders.cancel(job.workspace, f"campaign:{job.data.id}")
