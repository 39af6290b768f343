"""`payment.remind` and `payment.paid`: reminders of an invoice, before, on and after
its due date (dunning), until it is paid.

`payment.remind` publishes the invoice's reminders on the channels it names at
its steps: days from the due time, by default 3 days before, on the day, and 3
and 7 days after. A step is calendar days in the due time's zone, so every
reminder goes at the due time's wall-clock hour, summer or winter (a time the
clocks skip moves forward by the gap, as for every zoned time). Each is keyed
`payment:<id>:<channel>:<step>`, tagged `payment:<id>`, and expires a day after
it is due; steps already due are skipped. Publishing the invoice again (a new
due date) replaces them (functions/reminders.py); `payment.paid` cancels those
not yet sent.

Failures: as `booking.remind`'s (functions/booking.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from functions import reminders
from functions.reminders import Channels, Contact, Messages, Reminder, ThingId
from sluice.runtime import InvalidSchedule, Job, LocalTime, function, instant

PLACEHOLDERS = {"name", "amount", "due", "when"}
TEXT = "{name}: {amount} {when} ({due})."
SUBJECT = "{name}: {amount} {when}"
# A dunning step a day late still says the right thing; later, the next one is near.
LATE = timedelta(days=1)


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    id: ThingId
    name: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=200, description="What is due: `Invoice 2026-117`"),
    ]
    amount: Annotated[
        str, msgspec.Meta(min_length=1, max_length=50, description="As shown: `EUR 120.00`")
    ]
    due: Annotated[
        str | LocalTime,
        msgspec.Meta(
            description="When it is due, in its zone: RFC 9557 "
            '(`2026-12-24T09:00[Europe/Berlin]`) or `{"local", "zone"}`; RFC 3339 with an '
            "offset is taken too"
        ),
    ]
    contact: Contact
    channels: Channels = ("email",)
    steps_days: Annotated[
        tuple[Annotated[int, msgspec.Meta(ge=-365, le=365)], ...],
        msgspec.Meta(
            min_length=1,
            max_length=10,
            description="When to remind: days from the due time, negative before it",
        ),
    ] = (-3, 0, 3, 7)
    messages: Annotated[
        Messages,
        msgspec.Meta(
            description="The wording: placeholders {name}, {amount}, {due} and {when} "
            "(`due in 3 days`, `due today`, `overdue by 3 days`); a WhatsApp template gets "
            "name, amount and due"
        ),
    ] = Messages()

    def __post_init__(self) -> None:
        reminders.check(self.contact, self.channels, self.messages, PLACEHOLDERS)
        if len(set(self.steps_days)) != len(self.steps_days):
            raise ValueError("`steps_days` names a step twice")
        self.falls_due()

    def falls_due(self) -> datetime:
        """The due time as an aware datetime in its own zone."""
        try:
            return instant(self.due, f"payment {self.id}", "due")
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None


class Paid(msgspec.Struct, frozen=True, kw_only=True):
    id: ThingId


def plan(payment: Payment) -> list[Reminder]:
    """Every reminder of `payment`, past ones too (`reminders.replace` skips those)."""
    due = payment.falls_due()
    values = {"name": payment.name, "amount": payment.amount, "due": reminders.local(due)}
    planned = []
    for step in payment.steps_days:
        # Wall-clock days: the naive local time moved, then placed in the zone again.
        at = (due.replace(tzinfo=None) + timedelta(days=step)).replace(tzinfo=due.tzinfo)
        # In UTC: a skipped time becomes the instant after the gap, and the day it
        # is late for is elapsed time (see booking.plan).
        at = at.astimezone(UTC)
        filled = {**values, "when": _when(step)}
        text = reminders.fill(payment.messages.text or TEXT, filled)
        subject = reminders.fill(payment.messages.subject or SUBJECT, filled)
        parameters = (payment.name, payment.amount, values["due"])
        for channel in payment.channels:
            data = reminders.message(
                channel, payment.contact, payment.messages, text, subject, parameters
            )
            planned.append(Reminder(channel, step, at, at + LATE, data))
    return planned


def _when(step: int) -> str:
    if step == 0:
        return "due today"
    days = f"{abs(step)} day{'' if abs(step) == 1 else 's'}"
    return f"due in {days}" if step < 0 else f"overdue by {days}"


EXAMPLE = Payment(
    id="INV-2030-117",
    name="Invoice 2030-117",
    amount="EUR 120.00",
    due="2030-07-01T09:00[Europe/Berlin]",
    contact=Contact(email="ada@example.com"),
)


@function("payment.remind", input=Payment, example=EXAMPLE, timeout_s=30, attempts=5)
async def remind_payment(job: Job[Payment]) -> reminders.Replaced:
    return await reminders.replace(job.workspace, f"payment:{job.data.id}", plan(job.data))


@function("payment.paid", input=Paid, example=Paid(id="INV-2030-117"), timeout_s=30, attempts=5)
async def payment_paid(job: Job[Paid]) -> reminders.Cancelled:
    return await reminders.cancel(job.workspace, f"payment:{job.data.id}")
