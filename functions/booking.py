"""`booking.remind` and `booking.cancel`: a booking's reminders, scheduled and cancelled.

`booking.remind` takes a booking and publishes its reminders on the channels
it names (`sms.send`, `email.send`, `whatsapp.send` jobs) at its offsets before
the start: 24 hours, 1 hour and 15 minutes unless it says otherwise. An offset
is elapsed time, so across a change of the clocks "24 hours before" is 23 or 25
hours on the wall. Each reminder is keyed `booking:<id>:<channel>:<offset s>`,
tagged `booking:<id>`, and expires half its offset after it is due (at the
start at the latest): a 15-minute reminder picked up 8 minutes late is dropped,
not sent. Reminders already due are skipped. Publishing the booking again
(moved, other channels) replaces its reminders (functions/reminders.py says
how, and why a retry leaves no duplicate); `booking.cancel` cancels them, as
does `Jobs.cancel_tag("booking:<id>", ...)`.

Failures: a start that cannot be read, a channel without its contact or an
unknown placeholder is refused at publish; a channel function the deployment
lacks, or a reminder its channel refuses, rejects the job before anything is
cancelled; Redis unavailable retries it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from functions import reminders
from functions.reminders import Channels, Contact, Messages, Reminder, ThingId
from sluice.runtime import InvalidSchedule, Job, LocalTime, function, instant

# The furthest ahead of the start an offset may be: a reminder a year early is a mistake.
MAX_OFFSET_S = 366 * 86_400
PLACEHOLDERS = {"name", "start", "location", "when"}
TEXT = "Reminder: {name} {when}, {start}{location}."
SUBJECT = "Reminder: {name} {when}"


class Booking(msgspec.Struct, frozen=True, kw_only=True):
    id: ThingId
    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=200, description="What is booked: `Haircut with Sam`"
        ),
    ]
    start: Annotated[
        str | LocalTime,
        msgspec.Meta(
            description="When it starts, in its zone: RFC 9557 "
            '(`2026-12-24T10:00[Europe/Berlin]`) or `{"local": "2026-12-24T10:00", "zone": '
            '"Europe/Berlin"}`; RFC 3339 with an offset is taken too. Reminders show it there'
        ),
    ]
    contact: Contact
    channels: Channels = ("sms",)
    location: Annotated[str, msgspec.Meta(max_length=500, description="Where")] = ""
    offsets_s: Annotated[
        tuple[Annotated[int, msgspec.Meta(ge=60, le=MAX_OFFSET_S)], ...],
        msgspec.Meta(
            max_length=10,
            description="When to remind, in seconds before the start (elapsed time)",
        ),
    ] = (86_400, 3_600, 900)
    messages: Annotated[
        Messages,
        msgspec.Meta(
            description="The wording: placeholders {name}, {start}, {location} and {when} "
            "(`in 24 hours`); a WhatsApp template gets name, start and location"
        ),
    ] = Messages()

    def __post_init__(self) -> None:
        reminders.check(self.contact, self.channels, self.messages, PLACEHOLDERS)
        if len(set(self.offsets_s)) != len(self.offsets_s):
            raise ValueError("`offsets_s` names an offset twice")
        self.starts()  # a start that cannot be read is refused at publish

    def starts(self) -> datetime:
        """The start as an aware datetime in its own zone."""
        try:
            return instant(self.start, f"booking {self.id}", "start")
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None


class Cancel(msgspec.Struct, frozen=True, kw_only=True):
    id: ThingId


def plan(booking: Booking) -> list[Reminder]:
    """Every reminder of `booking`, past ones too (`reminders.replace` skips those)."""
    start = booking.starts()
    values = {
        "name": booking.name,
        "start": reminders.local(start),
        "location": f" at {booking.location}" if booking.location else "",
    }
    planned = []
    for offset in booking.offsets_s:
        # Elapsed time, so in UTC: Python's arithmetic on an aware datetime of a
        # zone is wall-clock arithmetic, wrong by an hour across a change of the clocks.
        due = start.astimezone(UTC) - timedelta(seconds=offset)
        expires = min(start.astimezone(UTC), due + timedelta(seconds=offset / 2))
        filled = {**values, "when": f"in {_span(offset)}"}
        text = reminders.fill(booking.messages.text or TEXT, filled)
        subject = reminders.fill(booking.messages.subject or SUBJECT, filled)
        parameters = (booking.name, values["start"], booking.location)
        for channel in booking.channels:
            data = reminders.message(
                channel, booking.contact, booking.messages, text, subject, parameters
            )
            planned.append(Reminder(channel, offset, due, expires, data))
    return planned


def _span(seconds: int) -> str:
    """`24 hours`, `1 hour`, `15 minutes`, `90 seconds`."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0 and not (unit == "day" and seconds <= 2 * 86_400):
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{seconds} seconds"


EXAMPLE = Booking(
    id="B-1042",
    name="Haircut with Sam",
    start="2030-06-14T10:00[Europe/Berlin]",
    location="Kastanienallee 12",
    contact=Contact(phone="+15550100", email="ada@example.com"),
    channels=("sms", "email"),
)


@function("booking.remind", input=Booking, example=EXAMPLE, timeout_s=30, attempts=5)
async def remind_booking(job: Job[Booking]) -> reminders.Replaced:
    return await reminders.replace(job.workspace, f"booking:{job.data.id}", plan(job.data))


@function("booking.cancel", input=Cancel, example=Cancel(id="B-1042"), timeout_s=30, attempts=5)
async def cancel_booking(job: Job[Cancel]) -> reminders.Cancelled:
    return await reminders.cancel(job.workspace, f"booking:{job.data.id}")
