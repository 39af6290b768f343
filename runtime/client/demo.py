"""What `sluice dev`'s demo publishes (`SLUICE_DEMO`), so a newcomer sees jobs flow:
each function's example, a booking whose reminders fall due while they watch,
and a small campaign whose first messages go two minutes later.

Each step is one coroutine of the `Client`; a step for a function the
deployment lacks publishes nothing; another demo is one more step in `STEPS`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sluice.runtime.client.publish import Client, Event
from sluice.streams.errors import SluiceError

log = logging.getLogger("sluice")


async def publish_demo(client: Client) -> None:
    """Run every step; one that fails is logged, and the others still run."""
    for step in STEPS:
        try:
            await step(client)
        except SluiceError as exc:
            log.warning("demo: %s failed: %s", step.__name__, exc)


async def examples(client: Client) -> None:
    """Each function's declared example, three times at once and once 5 s later
    (so the scheduler has something to promote)."""
    for fn in client.registry:
        if fn.example is None:
            continue
        events = [Event(workspace=f"demo-{n}", data=fn.example) for n in range(3)]
        events.append(Event(workspace="demo-later", data=fn.example, delay_ms=5_000))
        try:
            receipts = await client.publish_many(fn.name, events)
        except SluiceError as exc:
            log.warning("demo: could not publish to %s: %s", fn.name, exc)
            continue
        log.info("demo: published %s to %s", ", ".join(r.id for r in receipts), fn.name)


async def booking(client: Client) -> None:
    """A booking 16 minutes ahead: its 15-minute reminders fall due in a minute
    (the 24-hour and 1-hour ones are already past, so skipped)."""
    if "booking.remind" not in client.registry.by_name:
        return
    start = (datetime.now(UTC) + timedelta(minutes=16)).replace(microsecond=0)
    data = {
        "id": "demo-1",
        "name": "Haircut with Sam",
        "start": f"{start.isoformat()}[UTC]",
        "location": "Kastanienallee 12",
        "contact": {"phone": "+15550100", "email": "ada@example.com"},
        "channels": ["sms", "email"],
    }
    # Keyed by the booking, as a booking system would: a newer version of it
    # replaces one not yet handled.
    receipt = await client.publish(
        "booking.remind", workspace="demo", data=data, key="booking:demo-1"
    )
    log.info("demo: booking demo-1 at %s published (%s)", start.isoformat(), receipt.id)


async def campaign(client: Client) -> None:
    """A campaign of three contacts in Berlin's time: an SMS two minutes from now
    (the wall clock's minute), an email at the same time the next day."""
    if "campaign.launch" not in client.registry.by_name:
        return
    first = datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(minutes=2)
    at = first.strftime("%H:%M")
    data = {
        "id": "demo",
        "zone": "Europe/Berlin",
        "start": first.date().isoformat(),
        "steps": [
            {"day": 0, "at": at, "channel": "sms", "text": "Hi {name}, the sale starts now"},
            {"day": 1, "at": at, "channel": "email", "subject": "Sale", "text": "Hi {name}"},
        ],
        "contacts": [
            {"id": f"c-{n}", "name": name, "phone": f"+1555010{n}", "email": f"{name}@example.com"}
            for n, name in enumerate(("ada", "grace", "edsger"))
        ],
    }
    receipt = await client.publish(
        "campaign.launch", workspace="demo", data=data, key="campaign:demo"
    )
    log.info("demo: campaign demo published (%s), its first SMS at %s Berlin", receipt.id, at)


STEPS: tuple[Callable[[Client], Awaitable[None]], ...] = (examples, booking, campaign)
