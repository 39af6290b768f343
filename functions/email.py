"""`email.send`: send email in batches per workspace, over one SMTP connection a batch.

The provider is chosen in the settings (`SLUICE_EMAIL_PROVIDER`): `smtp` sends
each job's message (`multipart/alternative`: a text part, derived from the HTML
when none is given, and the HTML) to the server of `SLUICE_SMTP_*`; `callback`
POSTs each job's email as JSON to the deployment's own endpoint, signed the
Standard Webhooks way (functions/callback.py), a refused POST failing its job
alone; `log` only writes a line per batch, and sends nothing, as does a worker
with no provider set (its line says so, and the worker warns once at start).

How it fails: a message the server refuses (its recipient, its sender or its
content) fails that job alone: a 4xx reply is retried with the function's
backoff, a 5xx one dead-letters the job at once (`Reject`), with the server's
reply as the reason. A connection that cannot be made, or authenticated, fails
the whole batch, which is retried; one lost mid-batch fails the jobs not yet
sent (the ones the server took complete). Every attempt of a job sends the same
`Message-ID`, made from the job id, so a message sent twice (its reply lost
with the connection) is recognisable as one.
"""

from __future__ import annotations

import asyncio
import logging
from email.utils import parseaddr
from typing import Annotated

import aiosmtplib
import msgspec

from functions import callback
from functions.mime import RESERVED, build, domain_of, message_id
from sluice.runtime import Batch, EmailSettings, Job, Reject, batch_function, current_settings

log = logging.getLogger(__name__)

Address = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[^@\s<>,;:\"]+@[^@\s<>,;:\"]+$",
        max_length=254,
        description="An email address: `ada@example.com`.",
    ),
]
OneLine = msgspec.Meta(pattern=r"^[^\r\n]*$")
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[!-9;-~]{1,76}$")]
HeaderValue = Annotated[str, OneLine, msgspec.Meta(max_length=998)]
# Well within the usual SMTP SIZE limits, and the function's payload limit.
MAX_BODY = 200_000
# The server's port when none is set, by TLS mode.
PORTS = {"starttls": 587, "tls": 465, "none": 25}


class Email(msgspec.Struct, frozen=True, kw_only=True):
    """One email to one recipient; `html`, `text` or both."""

    to: Address
    subject: Annotated[str, OneLine, msgspec.Meta(max_length=998, description="The subject line.")]
    html: Annotated[
        str,
        msgspec.Meta(
            max_length=MAX_BODY,
            description="The HTML body; the text part is derived from it when `text` is empty.",
        ),
    ] = ""
    text: Annotated[str, msgspec.Meta(max_length=MAX_BODY, description="The plain-text body.")] = ""
    sender: Annotated[
        str,
        OneLine,
        msgspec.Meta(
            max_length=320,
            description="The From: an address or `Name <address>`; "
            "the deployment's SLUICE_EMAIL_FROM when empty.",
        ),
    ] = msgspec.field(default="", name="from")
    reply_to: Address | None = None
    headers: Annotated[
        dict[HeaderName, HeaderValue],
        msgspec.Meta(
            max_length=50,
            description="Extra headers (`List-Unsubscribe`, ...); not those the message "
            "sets itself (From, To, Subject, Reply-To, Cc, Bcc, Date, Message-ID, Content-*).",
        ),
    ] = {}
    contact_id: Annotated[
        str, msgspec.Meta(max_length=256, description="The recipient in the sender's own records.")
    ] = ""

    def __post_init__(self) -> None:
        # Raised at publish, as a 4xx naming the problem (msgspec makes it a ValidationError).
        if not (self.html or self.text):
            raise ValueError("an email needs `html` or `text`")
        if self.sender and "@" not in parseaddr(self.sender)[1]:
            raise ValueError(f"`from` is not an address: {self.sender!r}")
        reserved = sorted(
            name
            for name in self.headers
            if name.lower() in RESERVED or name.lower().startswith("content-")
        )
        if reserved:
            raise ValueError(f"`headers` may not set {', '.join(reserved)}")


class Sent(msgspec.Struct, frozen=True):
    """A job's result: what the server said it took."""

    message_id: str
    reply: str


def _say_if_unconfigured() -> None:
    """At a worker's start: with no provider, its messages go nowhere."""
    if not current_settings().email.provider:
        log.warning(
            "email.send: no email provider configured (SLUICE_EMAIL_PROVIDER): nothing is sent"
        )


@batch_function(
    "email.send",
    input=Email,
    example=Email(to="ada@example.com", subject="Welcome", html="<p>Hello!</p>"),
    on_start=_say_if_unconfigured,
    batch_size=100,
    # Each running batch holds one connection to the server.
    concurrency=4,
    timeout_s=120,
    rate_per_s=100,
    # A 4xx (a full mailbox, greylisting) clears in minutes, not seconds.
    attempts=5,
    backoff_base_s=30,
)
async def send_email(batch: Batch[Email]) -> None:
    settings = current_settings().email
    if settings.provider == "smtp":
        await _send_smtp(batch, settings)
        return
    if settings.provider == "callback":
        await _send_callback(batch, settings)
        return
    recipients = ", ".join(job.data.to for job in batch.jobs)
    why = "SLUICE_EMAIL_PROVIDER is log" if settings.provider else "no SLUICE_EMAIL_PROVIDER set"
    log.info(
        "email batch of %d for workspace %s: %s (not sent: %s)",
        len(batch),
        batch.workspace,
        recipients,
        why,
    )


async def _send_smtp(batch: Batch[Email], settings: EmailSettings) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port or PORTS[settings.smtp_tls],
        use_tls=settings.smtp_tls == "tls",
        start_tls=settings.smtp_tls == "starttls",
        username=settings.smtp_user or None,
        password=settings.smtp_password or None,
        timeout=settings.smtp_timeout_s,
        cert_bundle=settings.smtp_ca_file or None,
    )
    # Not reached, not TLS, not authenticated: raised, so the whole batch is retried.
    await smtp.connect()
    try:
        for sent, job in enumerate(batch.jobs):
            try:
                await _send_one(smtp, batch, job, settings.sender)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
                # The connection is gone: this job and the rest are tried again.
                for unsent in batch.jobs[sent:]:
                    batch.fail(unsent, exc)
                return
    finally:
        await _close(smtp)


class Callback(msgspec.Struct, frozen=True, kw_only=True, rename={"sender": "from"}):
    """What the `callback` provider POSTs for one email (signed, functions/callback.py)."""

    id: str
    workspace: str
    attempt: int
    to: str
    sender: str
    subject: str
    html: str
    text: str
    reply_to: str
    headers: dict[str, str]
    contact_id: str
    channel: str = "email"


_callback = msgspec.json.Encoder()


async def _send_callback(batch: Batch[Email], settings: EmailSettings) -> None:
    """Each job's email to the deployment's endpoint, one signed POST a job, all of a
    batch at once (one after another, a batch of slow answers would outlast the
    handler's timeout); a job whose POST fails fails alone, as the provider's answer
    says (functions/provider.py)."""
    key = settings.callback_key

    async def post(job: Job[Email]) -> None:
        email = job.data
        message = Callback(
            id=job.id,
            workspace=job.workspace,
            attempt=job.attempt,
            to=email.to,
            sender=email.sender or settings.sender,
            subject=email.subject,
            html=email.html,
            text=email.text,
            reply_to=email.reply_to or "",
            headers=email.headers,
            contact_id=email.contact_id,
        )
        payload = _callback.encode(message)
        try:
            accepted = await callback.deliver(
                settings.callback_url, key, settings.smtp_timeout_s, job.id, payload
            )
        except Exception as exc:
            batch.fail(job, exc)
        else:
            batch.result(job, Sent(accepted.message_id, accepted.status))

    await asyncio.gather(*(post(job) for job in batch.jobs))


async def _send_one(
    smtp: aiosmtplib.SMTP, batch: Batch[Email], job: Job[Email], default_sender: str
) -> None:
    email = job.data
    sender = email.sender or default_sender
    if not sender:
        batch.fail(job, "no `from` given and SLUICE_EMAIL_FROM is not set")
        return
    msgid = message_id(job.id, domain_of(sender))
    try:
        message = build(
            sender=sender,
            to=email.to,
            subject=email.subject,
            html=email.html,
            text=email.text,
            reply_to=email.reply_to or "",
            headers=email.headers,
            msgid=msgid,
        )
        _, reply = await smtp.send_message(
            message, sender=parseaddr(sender)[1], recipients=[email.to]
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients[0]
        batch.fail(job, _refusal(f"recipient {email.to}", refused.code, refused.message))
    except aiosmtplib.SMTPResponseException as exc:
        # The sender or the content refused; the client reset the envelope for the next.
        batch.fail(job, _refusal("message", exc.code, exc.message))
    except (ValueError, aiosmtplib.SMTPNotSupported) as exc:
        # What no attempt can send: a header the email package refuses, an address
        # the client cannot write (non-ASCII, to a server without SMTPUTF8).
        batch.fail(job, Reject(str(exc)))
    else:
        batch.result(job, Sent(msgid, reply))


def _refusal(what: str, code: int, reply: str) -> Exception | str:
    """A 4xx reply is temporary: retried; any other is final: dead-lettered."""
    reason = f"{what} refused: {code} {reply}"
    return reason if 400 <= code < 500 else Reject(reason)


async def _close(smtp: aiosmtplib.SMTP) -> None:
    """QUIT politely; a connection already broken is just closed."""
    if not smtp.is_connected:
        return
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
