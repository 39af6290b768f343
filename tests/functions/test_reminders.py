"""`booking.remind`, `booking.cancel`, `payment.remind` and `payment.paid` on a real
worker: the reminder jobs they leave, read back from Redis (no channel worker
runs, so every reminder stays delayed where the test can see it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from functions import FUNCTIONS
from functions.booking import Booking, cancel_booking, remind_booking
from functions.booking import plan as plan_booking
from functions.payment import Payment, payment_paid, remind_payment
from sluice.runtime import Client, Function, InvalidPayload
from sluice.runtime.registry import Registry
from sluice.streams import envelope as env
from sluice.streams import record
from sluice.streams.connection import Redis
from sluice.streams.jobs import JobRecord
from sluice.streams.keys import PartitionKeys
from tests.redis_server import RedisServer
from tests.runtime.helpers import hosting, total_counts, wait_until

REGISTRY = Registry(FUNCTIONS)
WORKERS: list[Function[Any]] = [remind_booking, cancel_booking, remind_payment, payment_paid]
BERLIN = ZoneInfo("Europe/Berlin")
CONTACT = {"phone": "+15550100", "email": "ada@example.com"}


def spring_forward(zone: ZoneInfo, after: datetime) -> datetime:
    """Local midnight of the first day after `after` on which `zone`'s clocks go forward."""
    day = datetime(after.year, after.month, after.day, tzinfo=zone) + timedelta(days=1)
    while not _offset(day + timedelta(days=1)) > _offset(day):
        day += timedelta(days=1)
    return day


def _offset(at: datetime) -> timedelta:
    return at.utcoffset() or timedelta()


def booking(id: str, start: Any, **more: Any) -> dict[str, Any]:
    return {"id": id, "name": "Haircut", "start": start, "contact": CONTACT, **more}


async def run(redis: Redis, url: str, *published: tuple[str, Any]) -> list[Any]:
    """Publish each (function, data) in turn, each handled before the next; their results."""
    client = Client(redis, REGISTRY)
    results = []
    async with hosting(url, WORKERS, registry=REGISTRY):
        for function, data in published:
            receipt = await client.publish(function, workspace="acme", data=data)

            async def done(function: str = function, id: str = receipt.id) -> bool:
                found = await client.jobs.get(function, id, workspace="acme")
                assert found is None or found.state not in ("dead", "failed"), found
                return found is not None and found.state == "completed"

            await wait_until(done, 10, what=f"{function} {receipt.id} completed")
            found = await client.jobs.get(function, receipt.id, workspace="acme")
            assert found is not None
            results.append(found.result)
    return results


async def delayed(redis: Redis, function: str, tag: str) -> list[JobRecord]:
    page = await Client(redis, REGISTRY).jobs.page(function, "delayed", workspace="acme")
    assert not page.cursor
    return sorted((j for j in page.jobs if tag in j.tags), key=lambda j: j.due_ms)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def expires(redis: Redis, function: str, job_id: str) -> datetime:
    raw = await redis.hget(PartitionKeys(function, 0).jobs, job_id)
    assert isinstance(raw, bytes)
    return at(env.decode(record.parse(raw).tail).expires_ms)


async def test_booking_reminders_land_at_elapsed_offsets_across_spring_forward(
    redis: Redis, shared_server: RedisServer
) -> None:
    # 10:00 on the morning the clocks went forward: 24 hours earlier is 09:00 on
    # the wall (winter time), not 10:00.
    day = spring_forward(BERLIN, datetime.now(UTC) + timedelta(days=2))
    start = day.replace(hour=10)
    text = f"{start.date().isoformat()}T10:00[Europe/Berlin]"
    data = booking("B1", text, channels=["sms", "email"], location="Main St 1")
    (result,) = await run(redis, shared_server.url, ("booking.remind", data))

    start_utc = start.astimezone(UTC)
    assert start_utc.hour == 8  # CEST
    wanted = [start_utc - timedelta(seconds=s) for s in (86_400, 3_600, 900)]
    assert wanted[0].astimezone(BERLIN).hour == 9  # the day before, still winter time
    for function in ("sms.send", "email.send"):
        jobs = await delayed(redis, function, "booking:B1")
        assert [at(j.due_ms) for j in jobs] == wanted
        channel = function.split(".")[0]
        assert [j.key for j in jobs] == [f"booking:B1:{channel}:{s}" for s in (86_400, 3_600, 900)]
        # Half the offset late at most, and never after the start.
        assert [await expires(redis, function, j.id) for j in jobs] == [
            wanted[0] + timedelta(hours=12),
            wanted[1] + timedelta(minutes=30),
            wanted[2] + timedelta(seconds=450),
        ]
    (sms, *_) = await delayed(redis, "sms.send", "booking:B1")
    assert sms.data["to"] == "+15550100"
    assert sms.data["body"] == (
        f"Reminder: Haircut in 24 hours, {start.strftime('%a %d %b %Y')}, 10:00 CEST at Main St 1."
    )
    assert len(result["reminders"]) == 6
    assert result["skipped"] == 0


async def test_a_moved_booking_is_rescheduled_and_a_cancelled_one_has_none_left(
    redis: Redis, shared_server: RedisServer
) -> None:
    first = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    moved = first + timedelta(days=2, minutes=30)
    await run(
        redis,
        shared_server.url,
        ("booking.remind", booking("moved", first.isoformat())),
        ("booking.remind", booking("gone", first.isoformat(), channels=["sms", "whatsapp"])),
        ("booking.remind", booking("moved", moved.isoformat())),
        ("booking.cancel", {"id": "gone"}),
    )
    jobs = await delayed(redis, "sms.send", "booking:moved")
    assert [at(j.due_ms) for j in jobs] == [
        moved - timedelta(seconds=s) for s in (86_400, 3_600, 900)
    ]
    assert await delayed(redis, "sms.send", "booking:gone") == []
    assert await delayed(redis, "whatsapp.send", "booking:gone") == []
    sms = await total_counts(redis, "sms.send")
    # Three for the first time of "moved", three of "gone": each cancelled once.
    assert (sms.delayed, sms.cancelled) == (3, 6)
    assert (await total_counts(redis, "whatsapp.send")).cancelled == 3


async def test_reminders_already_due_are_skipped(redis: Redis, shared_server: RedisServer) -> None:
    start = datetime.now(UTC) + timedelta(minutes=30)
    (result,) = await run(
        redis, shared_server.url, ("booking.remind", booking("soon", start.isoformat()))
    )
    assert [r["step"] for r in result["reminders"]] == [900]
    assert result["skipped"] == 2
    assert len(await delayed(redis, "sms.send", "booking:soon")) == 1


async def test_running_the_handler_again_leaves_one_set_of_reminders(
    redis: Redis, shared_server: RedisServer
) -> None:
    """What a retry does: the same booking handled twice (and a third time while
    its reminders are replaced by key) leaves each reminder once."""
    data = booking("again", (datetime.now(UTC) + timedelta(days=2)).isoformat())
    results = await run(redis, shared_server.url, *[("booking.remind", data)] * 3)
    assert [r["cancelled"] for r in results] == [0, 3, 3]
    jobs = await delayed(redis, "sms.send", "booking:again")
    assert len(jobs) == 3
    assert {j.id for j in jobs} == {r["id"] for r in results[-1]["reminders"]}


async def test_payment_reminders_follow_the_wall_clock_and_stop_once_paid(
    redis: Redis, shared_server: RedisServer
) -> None:
    # Due two days after the clocks go forward: the step 3 days before is in
    # winter time, yet at 09:00 like the others.
    day = spring_forward(BERLIN, datetime.now(UTC) + timedelta(days=4)) + timedelta(days=2)
    due = f"{day.date().isoformat()}T09:00[Europe/Berlin]"
    invoice = {
        "id": "INV-7",
        "name": "Invoice 7",
        "amount": "EUR 120.00",
        "due": due,
        "contact": CONTACT,
        "channels": ["email", "sms"],
    }
    (result,) = await run(redis, shared_server.url, ("payment.remind", invoice))
    assert result["skipped"] == 0
    jobs = await delayed(redis, "email.send", "payment:INV-7")
    assert [at(j.due_ms).astimezone(BERLIN).hour for j in jobs] == [9, 9, 9, 9]
    assert [(at(j.due_ms).astimezone(BERLIN).date() - day.date()).days for j in jobs] == [
        -3, 0, 3, 7,
    ]  # fmt: skip
    assert [j.data["subject"] for j in jobs] == [
        "Invoice 7: EUR 120.00 due in 3 days",
        "Invoice 7: EUR 120.00 due today",
        "Invoice 7: EUR 120.00 overdue by 3 days",
        "Invoice 7: EUR 120.00 overdue by 7 days",
    ]
    assert [await expires(redis, "email.send", j.id) for j in jobs] == [
        at(j.due_ms) + timedelta(days=1) for j in jobs
    ]
    (paid,) = await run(redis, shared_server.url, ("payment.paid", {"id": "INV-7"}))
    assert paid == {"cancelled": 8, "running": 0}
    assert await delayed(redis, "email.send", "payment:INV-7") == []
    assert await delayed(redis, "sms.send", "payment:INV-7") == []


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (booking("x", "2030-01-01T10:00"), "has no time zone"),
        (booking("x", "2030-01-01T10:00[Mars/Olympus]"), "unknown time zone"),
        (booking("x", "2030-01-01T10:00Z", channels=["email"], contact={}), "contact.email"),
        (booking("x", "2030-01-01T10:00Z", messages={"text": "{nme}"}), "{nme}"),
        (booking("x y", "2030-01-01T10:00Z"), "id"),
    ],
)
async def test_a_booking_that_cannot_be_reminded_is_refused_at_publish(
    redis: Redis, data: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidPayload, match=says.replace("{", r"\{")):
        await Client(redis, REGISTRY).publish("booking.remind", workspace="acme", data=data)


def test_the_inputs_take_a_local_time_and_zone() -> None:
    data = msgspec.convert(
        booking("z", {"local": "2030-03-31T02:30", "zone": "Europe/Berlin"}), Booking
    )
    # 02:30 that night does not exist in Berlin: 03:30 summer time, as every zoned time.
    assert data.starts().astimezone(UTC) == datetime(2030, 3, 31, 1, 30, tzinfo=UTC)
    paid = msgspec.convert(
        {"id": "p", "name": "n", "amount": "1", "due": "2030-01-01T09:00+01:00",
         "contact": CONTACT},
        Payment,
    )  # fmt: skip
    assert paid.falls_due().hour == 9


async def test_a_reminder_its_channel_refuses_rejects_the_booking_at_once(
    redis: Redis, shared_server: RedisServer
) -> None:
    # Each part within its bounds, but the SMS they make is longer than sms.send takes.
    data = booking(
        "long",
        (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        location="x" * 500,
        messages={"text": "{location}" * 4},
    )
    receipt = await Client(redis, REGISTRY).publish("booking.remind", workspace="acme", data=data)
    async with hosting(shared_server.url, WORKERS, registry=REGISTRY):

        async def dead() -> bool:
            found = await Client(redis, REGISTRY).jobs.get("booking.remind", receipt.id)
            return found is not None and found.state == "dead"

        await wait_until(dead, 10, what="booking.remind rejected")
    found = await Client(redis, REGISTRY).jobs.get("booking.remind", receipt.id)
    assert found is not None
    assert found.attempts == 1
    assert "sms.send" in found.error
    assert await delayed(redis, "sms.send", "booking:long") == []


def test_a_whatsapp_template_gets_the_bookings_name_start_and_location() -> None:
    data = msgspec.convert(
        booking(
            "w",
            "2030-06-14T10:00[Europe/Berlin]",
            channels=["whatsapp"],
            location="Main St 1",
            offsets_s=[3600],
            messages={"whatsapp_template": "appointment_reminder", "whatsapp_language": "de"},
        ),
        Booking,
    )
    (reminder,) = plan_booking(data)
    assert reminder.data == {
        "to": "+15550100",
        "template": {
            "name": "appointment_reminder",
            "language": "de",
            "parameters": ("Haircut", "Fri 14 Jun 2030, 10:00 CEST", "Main St 1"),
        },
    }
