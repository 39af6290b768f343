"""An email as MIME: the message `email.send` hands its SMTP server.

The plain-text part of an HTML-only email is derived from the HTML with the
standard library's parser: mail clients that show text only, and spam filters
that distrust HTML without text, both get a readable body.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from html.parser import HTMLParser

# Elements whose content is not text a reader sees.
HIDDEN = frozenset({"head", "script", "style", "template", "title"})
# Elements that start on a line of their own.
_BLOCKS = """address article aside blockquote div dl dt dd fieldset figure footer form
    h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tr ul"""
BLOCKS = frozenset(_BLOCKS.split())
# Blocks set apart by blank lines.
PARAGRAPHS = frozenset({"blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "ol", "p", "table", "ul"})
# Headers the message builds itself: a caller's would duplicate or contradict
# them, and Cc or Bcc would reach people who are not in the SMTP envelope.
_RESERVED = """bcc cc content-transfer-encoding content-type date from message-id
    mime-version reply-to return-path sender subject to"""
RESERVED = frozenset(_RESERVED.split())


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.hidden = 0
        self.link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN:
            self.hidden += 1
        elif tag in PARAGRAPHS:
            self.lines += ["", ""]
        elif tag == "br" or tag in BLOCKS:
            self.lines.append("- " if tag == "li" else "")
        elif tag == "a":
            self.link = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in PARAGRAPHS:
            self.lines.append("")
        elif tag == "a":
            # The address of a link whose text is not the address itself.
            if self.link and self.link not in self.lines[-1] and not self.link.startswith("#"):
                self.lines[-1] += f" ({self.link})"
            self.link = None

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.lines[-1] += data


def html_to_text(html: str) -> str:
    """The text a reader sees in `html`: a line per block, paragraphs apart, links kept."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    text = "\n".join(" ".join(line.split()) for line in parser.lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def domain_of(mailbox: str) -> str:
    """The domain of an address, bare or with a name (`Ada <ada@example.com>`)."""
    return parseaddr(mailbox)[1].rpartition("@")[2]


def message_id(job_id: str, domain: str) -> str:
    """The Message-ID of the job's email: the same on every attempt, so a message
    sent twice (a retry after a lost reply) is recognisable as one.

    A job id may hold characters a Message-ID may not (`:`, dots in a row): every
    byte but letters, digits, `_`, `-` and `~` is written as `=XX`, which no job
    id contains, so two jobs never share a Message-ID.
    """
    left = "".join(
        chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "_-~") else f"={b:02X}"
        for b in job_id.encode()
    )
    return f"<{left}@{domain}>"


def build(
    *,
    sender: str,
    to: str,
    subject: str,
    html: str,
    text: str,
    reply_to: str,
    headers: dict[str, str],
    msgid: str,
) -> EmailMessage:
    """A `multipart/alternative` message (text, then HTML: the last part is the one
    clients prefer), or `text/plain` alone when there is no HTML."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = msgid
    for name, value in headers.items():
        message[name] = value
    message.set_content(text or html_to_text(html))
    if html:
        message.add_alternative(html, subtype="html")
    return message
