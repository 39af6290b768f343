"""A real SMTP server (aiosmtpd) on 127.0.0.1 for email.send's tests, on the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "sluice", "s3cret"
# Recipients the server refuses, and with which reply.
REFUSED = {
    "nobody@example.com": "550 5.1.1 No such user",
    "full@example.com": "452 4.2.2 Mailbox full, try again later",
}
# A recipient at which the server drops the connection, and one at which it stalls.
DROP, STALL = "drop@example.com", "stall@example.com"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command (the
    test environment has no `cryptography` package)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    user: str


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps what it accepted and counts connections."""

    received: list[Received] = field(default_factory=list)
    connections: int = 0
    # Set when the server closes: a stalled reply is never sent.
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == DROP and server.transport is not None:
            server.transport.close()
        if address == STALL:
            await self.closed.wait()
        if address in REFUSED:
            return REFUSED[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        tls = server.transport is not None and bool(server.transport.get_extra_info("ssl_object"))
        login = session.auth_data
        self.received.append(
            Received(
                sender=envelope.mail_from or "",
                recipients=list(envelope.rcpt_tos),
                message=message,
                tls=tls or session.ssl is not None,
                user=login.login.decode() if isinstance(login, LoginPassword) else "",
            )
        )
        return f"250 OK queued as {len(self.received)}"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers the refusal (535) itself.
    return AuthResult(success=ok, handled=False, auth_data=data)


@contextlib.asynccontextmanager
async def smtp_server(
    inbox: Inbox,
    *,
    tls: Literal["starttls", "tls", "none"] = "none",
    cert: tuple[Path, Path] | None = None,
    auth: bool = False,
) -> AsyncIterator[int]:
    """Serve `inbox` on a free port of 127.0.0.1 (yielded) until the block ends.

    starttls: the server refuses mail and AUTH before STARTTLS; tls: it speaks
    TLS from the first byte; auth: it refuses mail from a client not logged in.
    """
    context = None
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*cert)

    def connection() -> SMTP:
        inbox.connections += 1
        with warnings.catch_warnings():
            # aiosmtpd knows only STARTTLS as TLS: it warns of AUTH without TLS even
            # over implicit TLS (and refuses AUTH there if told to require TLS).
            warnings.simplefilter("ignore", UserWarning)
            return SMTP(
                inbox,
                hostname="smtp.test",
                tls_context=context if tls == "starttls" else None,
                require_starttls=tls == "starttls",
                authenticator=_authenticate if auth else None,
                auth_required=auth,
                auth_require_tls=tls == "starttls",
            )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        connection, "127.0.0.1", 0, ssl=context if tls == "tls" else None
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        inbox.closed.set()
        server.close()
        await server.wait_closed()
