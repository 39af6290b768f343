"""email.send against a real SMTP server (aiosmtpd on 127.0.0.1): TLS, auth, MIME,
and a refused recipient failing its job alone."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
import standardwebhooks

from functions.email import Email, send_email
from functions.mime import html_to_text, message_id
from sluice.runtime import Client, ConfigurationError, Event, Function, InvalidPayload, Jobs
from sluice.runtime.registry import Registry
from sluice.runtime.settings import from_env
from sluice.streams.connection import Redis
from sluice.streams.jobs import Counts
from tests.functions.providers import Answer, ProviderServer, assert_rate_held
from tests.functions.smtp_server import (
    DROP,
    PASSWORD,
    STALL,
    USER,
    Inbox,
    self_signed,
    smtp_server,
)
from tests.redis_server import RedisServer
from tests.runtime.helpers import LoopLag, hosting, total_counts, wait_until

REGISTRY = Registry([send_email])


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@contextlib.asynccontextmanager
async def email_worker(
    url: str, environ: Mapping[str, str], fn: Function[Any] = send_email
) -> AsyncIterator[None]:
    """A worker running email.send (as `fn` declares it) with the settings of `environ`,
    as `sluice worker` would; retries stay delayed, to be seen there: no promotion in
    this worker."""
    async with hosting(url, [fn], {**environ, "SLUICE_WORKER_SCHEDULER": "false"}):
        yield


async def publish(redis: Redis, *emails: Email) -> list[str]:
    """Publish `emails` for one workspace at once, so one batch carries them."""
    receipts = await Client(redis, REGISTRY).publish_many(
        "email.send", [Event(workspace="acme", data=e) for e in emails]
    )
    return [r.id for r in receipts]


async def settled(redis: Redis, **expected: int) -> Counts:
    """Wait until email.send's counts have the `expected` values."""

    async def reached() -> bool:
        found = msgspec.structs.asdict(await total_counts(redis, "email.send"))
        return all(found[name] == n for name, n in expected.items())

    await wait_until(reached, timeout_s=15, what=f"email.send counts {expected}")
    return await total_counts(redis, "email.send")


def smtp_environ(port: int, tls: str, **more: str) -> dict[str, str]:
    return {
        "SLUICE_EMAIL_PROVIDER": "smtp",
        "SLUICE_SMTP_HOST": "127.0.0.1",
        "SLUICE_SMTP_PORT": str(port),
        "SLUICE_SMTP_TLS": tls,
        "SLUICE_EMAIL_FROM": "Sluice <noreply@sluice.test>",
        "SLUICE_SMTP_TIMEOUT_S": "5",
        **more,
    }


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_an_html_email_arrives_as_multipart_alternative_over_tls_with_auth(
    redis: Redis, shared_server: RedisServer, cert: tuple[Path, Path], tls: str
) -> None:
    inbox = Inbox()
    html = (
        "<h1>Welcome</h1><p>Your booking is <b>confirmed</b>. "
        '<a href="https://x.test/b">See it</a></p>'
    )
    email = Email(
        to="ada@example.com",
        subject="Booking confirmed ✓",
        html=html,
        reply_to="desk@example.com",
        headers={"List-Unsubscribe": "<https://x.test/u/1>"},
        contact_id="c-1",
    )
    environ = smtp_environ(
        0,
        tls,
        SLUICE_SMTP_USER=USER,
        SLUICE_SMTP_PASSWORD=PASSWORD,
        SLUICE_SMTP_CA_FILE=str(cert[0]),
    )
    async with smtp_server(inbox, tls=tls, cert=cert, auth=True) as port:  # type: ignore[arg-type]
        environ["SLUICE_SMTP_PORT"] = str(port)
        [job_id] = await publish(redis, email)
        async with email_worker(shared_server.url, environ):
            await settled(redis, completed=1)
    [got] = inbox.received
    assert (got.tls, got.user) == (True, USER)
    assert (got.sender, got.recipients) == ("noreply@sluice.test", ["ada@example.com"])
    message = got.message
    assert message.get_content_type() == "multipart/alternative"
    text, rich = message.iter_parts()
    assert (text.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    # Derived from the HTML (lines end in CRLF on the wire).
    derived = "Welcome\r\n\r\nYour booking is confirmed. See it (https://x.test/b)\r\n"
    assert text.get_content() == derived
    assert rich.get_content().rstrip("\r\n") == html
    assert message["Subject"] == "Booking confirmed ✓"
    assert message["From"] == "Sluice <noreply@sluice.test>"
    assert (message["To"], message["Reply-To"]) == ("ada@example.com", "desk@example.com")
    assert message["List-Unsubscribe"] == "<https://x.test/u/1>"
    assert message["Date"]
    # The Message-ID is the job's: the same on a retry, and kept as the job's result.
    assert message["Message-ID"] == message_id(job_id, "sluice.test")
    record = await Jobs(redis, REGISTRY).get("email.send", job_id)
    assert record is not None
    assert record.result == {"message_id": message["Message-ID"], "reply": "OK queued as 1"}


async def test_a_refused_recipient_fails_only_its_job(
    redis: Redis, shared_server: RedisServer
) -> None:
    inbox = Inbox()
    emails = [
        Email(to="ada@example.com", subject="One", text="Plain text, as given.\n"),
        Email(to="nobody@example.com", subject="Two", html="<p>2</p>"),
        Email(to="full@example.com", subject="Three", html="<p>3</p>"),
        Email(to="bob@example.com", subject="Four", html="<p>4</p>", sender="ops@acme.test"),
    ]
    async with smtp_server(inbox) as port:
        ids = await publish(redis, *emails)
        async with email_worker(shared_server.url, smtp_environ(port, "none")):
            counts = await settled(redis, completed=2, dead=1, delayed=1)
    # One batch, one connection, the two accepted messages delivered.
    assert inbox.connections == 1
    assert [r.recipients for r in inbox.received] == [["ada@example.com"], ["bob@example.com"]]
    plain = inbox.received[0].message
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content() == "Plain text, as given.\r\n"
    assert inbox.received[1].sender == "ops@acme.test"
    assert inbox.received[1].message["Message-ID"] == message_id(ids[3], "acme.test")
    assert counts.failed == 2
    jobs = Jobs(redis, REGISTRY)
    # 5xx: dead-lettered at once with the server's reply; 4xx: retried later.
    refused, full = [await jobs.get("email.send", i) for i in ids[1:3]]
    assert refused is not None
    assert (refused.state, refused.attempts) == ("dead", 1)
    assert "550 5.1.1 No such user" in refused.error
    assert full is not None
    assert full.state == "delayed"
    assert "452 4.2.2 Mailbox full" in full.error


@pytest.mark.parametrize("lost", [DROP, STALL])
async def test_a_connection_lost_mid_batch_retries_the_jobs_not_yet_sent(
    redis: Redis, shared_server: RedisServer, lost: str
) -> None:
    inbox = Inbox()
    emails = [
        Email(to="ada@example.com", subject="Sent", text="1"),
        Email(to=lost, subject="Lost", text="2"),
        Email(to="bob@example.com", subject="Not sent yet", text="3"),
    ]
    async with smtp_server(inbox) as port:
        ids = await publish(redis, *emails)
        environ = smtp_environ(port, "none", SLUICE_SMTP_TIMEOUT_S="0.5")
        async with email_worker(shared_server.url, environ):
            counts = await settled(redis, completed=1, delayed=2)
    assert counts.failed == 2
    assert [r.recipients for r in inbox.received] == [["ada@example.com"]]
    jobs = Jobs(redis, REGISTRY)
    sent = await jobs.get("email.send", ids[0])
    assert sent is not None
    assert sent.state == "completed"


@pytest.mark.parametrize("failure", ["refused connection", "wrong password"])
async def test_a_batch_that_cannot_connect_is_retried_whole(
    redis: Redis, shared_server: RedisServer, failure: str
) -> None:
    inbox = Inbox()
    emails = [Email(to=f"u{n}@example.com", subject="Hi", text="Hi") for n in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        port = await stack.enter_async_context(smtp_server(inbox, auth=True))
        if failure == "refused connection":
            await stack.aclose()  # nothing listens on the port any more
        environ = smtp_environ(port, "none", SLUICE_SMTP_USER=USER, SLUICE_SMTP_PASSWORD="wrong")
        await publish(redis, *emails)
        async with email_worker(shared_server.url, environ):
            counts = await settled(redis, delayed=3)
    assert (counts.completed, counts.dead, counts.failed) == (0, 0, 3)
    assert inbox.received == []


@pytest.mark.parametrize(
    ("environ", "why"),
    [
        ({"SLUICE_EMAIL_PROVIDER": "log"}, "SLUICE_EMAIL_PROVIDER is log"),
        ({}, "no SLUICE_EMAIL_PROVIDER set"),
    ],
)
async def test_without_smtp_nothing_is_sent_and_the_log_says_why(
    redis: Redis,
    shared_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    environ: dict[str, str],
    why: str,
) -> None:
    caplog.set_level("INFO", logger="functions.email")
    await publish(redis, Email(to="ada@example.com", subject="Hi", text="Hi"))
    async with email_worker(shared_server.url, environ):
        await settled(redis, completed=1)
    assert any(f"(not sent: {why})" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"to": "ada@example.com", "subject": "No body"}, "needs `html` or `text`"),
        ({"to": "ada", "subject": "s", "text": "t"}, "$.to"),
        ({"to": "ada@example.com", "subject": "a\r\nBcc: eve@x.test", "text": "t"}, "$.subject"),
        ({"to": "ada@example.com", "subject": "s", "text": "t", "from": "me"}, "not an address"),
        (
            {"to": "ada@example.com", "subject": "s", "text": "t", "headers": {"Bcc": "e@x.test"}},
            "may not set Bcc",
        ),
        (
            {"to": "ada@example.com", "subject": "s", "text": "t", "headers": {"X-A": "1\n2"}},
            "$.headers",
        ),
    ],
)
async def test_bad_emails_are_refused_at_publish(
    redis: Redis, data: dict[str, object], problem: str
) -> None:
    with pytest.raises(InvalidPayload) as caught:
        await Client(redis, REGISTRY).publish("email.send", workspace="acme", data=data)
    assert problem in str(caught.value)


def test_the_text_part_reads_like_the_html() -> None:
    html = (
        "<html><head><title>T</title><style>p {}</style></head><body>"
        "<h1>Hi &amp; welcome</h1><p>Your   booking is <b>confirmed</b>.<br>"
        '<a href="https://x.test/b">Details</a> <a href="https://x.test">https://x.test</a></p>'
        "<ul><li>one</li><li>two</li></ul><div>a</div><div>b</div>"
        "<script>track()</script><p>Bye</p></body></html>"
    )
    assert html_to_text(html) == (
        "Hi & welcome\n\nYour booking is confirmed.\nDetails (https://x.test/b) https://x.test"
        "\n\n- one\n- two\n\na\nb\n\nBye\n"
    )


def test_message_ids_are_valid_and_distinct_for_distinct_jobs() -> None:
    ids = ["06HABC", "acme~order:42", "acme~order=3A42", "acme~a..b", "acme~.x", "acme~é"]
    made = [message_id(i, "example.com") for i in ids]
    assert len(set(made)) == len(ids)
    for made_id in made:
        left, at, right = made_id.rpartition("@")
        assert (left[:1], at, right) == ("<", "@", "example.com>")
        assert all(c.isascii() and (c.isalnum() or c in "_-~=") for c in left[1:])


def test_email_settings_come_from_the_environment() -> None:
    settings = from_env(smtp_environ(2525, "tls", SLUICE_SMTP_USER="u", SLUICE_SMTP_PASSWORD="p"))
    email = settings.email
    assert (email.provider, email.smtp_host, email.smtp_port, email.smtp_tls) == (
        "smtp",
        "127.0.0.1",
        2525,
        "tls",
    )
    assert (email.smtp_user, email.smtp_password, email.sender) == (
        "u",
        "p",
        "Sluice <noreply@sluice.test>",
    )
    assert from_env({}).email.provider == ""
    assert "'p'" not in repr(settings)
    assert "smtp_password='***'" in repr(settings)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"SLUICE_EMAIL_PROVIDER": "smtp"}, "SLUICE_SMTP_HOST is needed"),
        ({"SLUICE_EMAIL_PROVIDER": "pigeon"}, "SLUICE_EMAIL_PROVIDER='pigeon'"),
        ({"SLUICE_SMTP_TLS": "maybe"}, "SLUICE_SMTP_TLS='maybe'"),
        ({"SLUICE_SMTP_USER": "u"}, "needs SLUICE_SMTP_PASSWORD"),
        ({"SLUICE_SMTP_PORT": "70000"}, "SLUICE_SMTP_PORT"),
    ],
)
def test_bad_email_settings_stop_the_process(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem.replace("(", r"\(")):
        from_env(environ)


SECRET = "whsec_" + base64.b64encode(b"sixteen-or-more-bytes-of-key").decode()


async def test_the_callback_provider_posts_each_email_signed(
    redis: Redis, shared_server: RedisServer
) -> None:
    async with ProviderServer().serve() as receiver:
        receiver.success = Answer(202, {"message_id": "app-7", "status": "queued"})
        # The second POST to arrive is refused for good: that email alone is dead.
        receiver.answers = [Answer(200, {}), Answer(422, {"message": "unknown contact"})]
        first, second = await publish(
            redis,
            Email(to="ada@example.com", subject="Hi", text="Hello", contact_id="c-1"),
            Email(to="bob@example.com", subject="Hi", html="<p>Hello</p>"),
        )
        environ = {
            "SLUICE_EMAIL_PROVIDER": "callback",
            "SLUICE_EMAIL_CALLBACK_URL": f"{receiver.url}/send-email",
            "SLUICE_EMAIL_CALLBACK_SECRET": SECRET,
            "SLUICE_EMAIL_FROM": "Clinic <hello@clinic.test>",
        }
        async with email_worker(shared_server.url, environ):
            await settled(redis, completed=1, dead=1)
    # The POSTs of a batch go at once: which got which answer is their order of arrival.
    delivered, refused = (a.headers["webhook-id"] for a in receiver.arrivals)
    assert {delivered, refused} == {first, second}
    shown = {
        first: {"to": "ada@example.com", "html": "", "text": "Hello", "contact_id": "c-1"},
        second: {"to": "bob@example.com", "html": "<p>Hello</p>", "text": "", "contact_id": ""},
    }
    for arrival in receiver.arrivals:
        assert arrival.path == "/send-email"
        job_id = arrival.headers["webhook-id"]
        assert standardwebhooks.Webhook(SECRET).verify(arrival.body, arrival.headers) == {
            "id": job_id,
            "workspace": "acme",
            "attempt": 1,
            "from": "Clinic <hello@clinic.test>",
            "subject": "Hi",
            "reply_to": "",
            "headers": {},
            "channel": "email",
            **shown[job_id],
        }
    jobs = Jobs(redis, REGISTRY)
    record = await jobs.get("email.send", delivered, workspace="acme")
    assert record is not None
    assert record.result == {"message_id": delivered, "reply": ""}
    dead = await jobs.get("email.send", refused, workspace="acme")
    assert dead is not None
    assert dead.state == "dead"
    assert "unknown contact" in dead.error


async def test_the_rate_holds_under_load(redis: Redis, shared_server: RedisServer) -> None:
    # 20 emails a second with a second's burst, counted by email (a batch's POSTs
    # go at once; the limits count its jobs): 50 take about 1.5 s.
    (limited,) = REGISTRY.with_rates({"email.send": 20})
    email = Email(to="ada@example.com", subject="Spring sale", text="20% off")
    events = [Event(workspace=f"ws-{n % 5}", data=email) for n in range(50)]
    await Client(redis, REGISTRY).publish_many("email.send", events)
    async with ProviderServer().serve() as receiver:
        receiver.success = Answer(202, {"status": "queued"})
        environ = {
            "SLUICE_EMAIL_PROVIDER": "callback",
            "SLUICE_EMAIL_CALLBACK_URL": f"{receiver.url}/send-email",
            "SLUICE_EMAIL_CALLBACK_SECRET": SECRET,
            "SLUICE_EMAIL_FROM": "Shop <hello@shop.test>",
        }
        async with LoopLag().watching() as lag, email_worker(shared_server.url, environ, limited):
            await settled(redis, completed=50)
    sent: dict[str, float] = {}
    for arrival in receiver.arrivals:
        sent.setdefault(arrival.headers["webhook-id"], arrival.at_s)
    assert len(sent) == 50
    assert_rate_held(sent.values(), limited, lag)


async def test_a_worker_with_no_email_provider_says_so_at_start(
    redis: Redis, shared_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="functions.email")
    async with email_worker(shared_server.url, {}):
        pass
    warnings = [r for r in caplog.records if "no email provider configured" in r.getMessage()]
    assert len(warnings) == 1
