"""A campaign's contacts: the `Recipient` shape, and pages of them fetched from a URL.

A list too long to publish inline (over 20,000) is served by the sender's own
app in pages, `{"contacts": [...], "next": "<URL of the next page>" | null}`.
The URL is the tenant's, so each page's host passes the SSRF guard
(functions/ssrf.py, the allow-list of `SLUICE_WEBHOOK_ALLOW`) and the
connection goes to the checked address; redirects are not followed.
"""

from __future__ import annotations

from typing import Annotated

import aiohttp
import msgspec
import yarl

from functions.email import Address
from functions.provider import ProviderUnavailable, failure
from functions.reminders import Contact
from functions.sms import Phone
from functions.ssrf import Pinned, Refused, Unresolved, check
from sluice.runtime import Reject, current_settings, e164

# Contacts one campaign may reach, and pages followed: a loop of `next` links ends.
MAX_CONTACTS = 100_000
MAX_PAGES = 1000
# A page's body: 20,000 contacts of a few hundred bytes each at most.
MAX_PAGE_BYTES = 8 * 1024 * 1024
ACCEPT = {"Accept": "application/json"}


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """One contact of a campaign."""

    id: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
            description="The contact's id in the sender's records (part of each job's id, "
            "so a launch retried adds no second message): 1-64 of A-Z a-z 0-9 _ . -",
        ),
    ]
    name: Annotated[str, msgspec.Meta(max_length=200, description="Fills {name}")] = ""
    phone: Phone | None = None
    email: Address | None = None
    fields: Annotated[
        dict[Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,40}$")], str],
        msgspec.Meta(description='More placeholders: `{"first_name": "Ada"}` fills {first_name}'),
    ] = {}

    def __post_init__(self) -> None:
        # Checked where it is given (at publish, or as its page is read), once.
        if self.phone is not None:
            msgspec.structs.force_setattr(self, "phone", e164(self.phone, "phone"))

    def contact(self) -> Contact:
        """The channels' view of it: its phone in E.164, its address."""
        return Contact(phone=self.phone, email=self.email)


class Page(msgspec.Struct, frozen=True):
    contacts: list[Recipient]
    next: str | None = None


_page = msgspec.json.Decoder(Page)


async def fetch(url: str) -> list[Recipient]:
    """Every page's contacts, following `next` from `url`; relative links are
    taken from the page that gives them."""
    found: list[Recipient] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        pages += 1
        if pages > MAX_PAGES:
            raise Reject(f"contacts: more than {MAX_PAGES} pages from {url}")
        page = await _get(next_url)
        found += page.contacts
        if len(found) > MAX_CONTACTS:
            raise Reject(f"contacts: more than {MAX_CONTACTS} from {url}")
        next_url = str(yarl.URL(next_url).join(yarl.URL(page.next))) if page.next else None
    return found


async def _get(url: str) -> Page:
    settings = current_settings().webhook
    try:
        target = await check(url, settings)
    except Refused as exc:
        raise Reject(f"contacts: {exc}") from None
    except Unresolved as exc:
        raise ProviderUnavailable(f"contacts: {exc}") from None
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=Pinned(target)),
                timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
            ) as session,
            session.get(
                url, allow_redirects=False, headers={"Accept": "application/json"}
            ) as reply,
        ):
            body = await reply.content.read(MAX_PAGE_BYTES + 1)
            status, headers = reply.status, reply.headers
    except TimeoutError:
        raise ProviderUnavailable(f"contacts: no answer within {settings.timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"contacts: {type(exc).__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise failure(f"contacts at {url}", status, headers, body)
    if len(body) > MAX_PAGE_BYTES:
        raise Reject(f"contacts: a page of {url} is over {MAX_PAGE_BYTES} bytes")
    try:
        return _page.decode(body)
    except msgspec.DecodeError as exc:
        raise Reject(f"contacts: the page at {url} is not a page of contacts: {exc}") from None
