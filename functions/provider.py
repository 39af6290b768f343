"""One call to a delivery provider's HTTP API, and what its answer means for the job.

- 2xx: delivered; the caller reads the provider's message id from the body.
- 429, 408, 425 or 5xx: the provider is busy or broken, not the message: `Retry`
  after its `Retry-After` when it gives one, else the function's backoff.
- 401 or 403: the deployment's credentials, which an operator can fix: retried
  with backoff, then dead-lettered (replayable once fixed).
- any other 4xx: the message itself (a bad number, an empty body): `Reject`ed at
  once with the provider's reason, as retrying cannot help.
- no answer within the timeout, a refused or dropped connection: retried with
  backoff. The provider may have sent the message before a timeout, so a retry
  can send it twice; delivery is at least once.
"""

from __future__ import annotations

import base64
import email.utils
import time
from collections.abc import Mapping

import aiohttp
import msgspec

from sluice.runtime import Reject, Retry

# Busy or broken, not the message's fault.
RETRYABLE = frozenset({408, 425, 429})
# Credentials or permissions: the operator's to fix.
REFUSED = frozenset({401, 403})
# A Retry-After beyond this is taken as this: a bogus header must not park a message for years.
MAX_RETRY_AFTER_S = 86_400.0


class ProviderUnavailable(Exception):
    """The provider did not answer, or answered that it cannot take the message now."""


class ProviderRefused(Exception):
    """The provider refused the deployment's credentials."""


async def post(
    provider: str,
    url: str,
    *,
    timeout_s: float,
    body: bytes,
    headers: Mapping[str, str],
    busy_codes: frozenset[int] = frozenset(),
) -> bytes:
    """POST `body` to `url`; the answer's body if it is a 2xx, else raise what the
    status means for the job (see the module's docstring). `busy_codes`: the
    provider's own error codes that say "not now" whatever the status (Meta
    answers a throughput limit with a 400)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        # A session per call: a function has no worker-lifetime hook to own one.
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            answer = await response.read()
            if 200 <= response.status < 300:
                return answer
            raise failure(provider, response.status, response.headers, answer, busy_codes)
    except TimeoutError:
        raise ProviderUnavailable(f"{provider}: no answer within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"{provider}: {type(exc).__name__}: {exc}") from None


def basic_auth(user: str, password: str) -> str:
    """An `Authorization` header's value for HTTP basic auth (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def failure(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    busy_codes: frozenset[int] = frozenset(),
) -> Exception:
    """The exception that settles a job whose provider answered `status` (not 2xx)."""
    words, code = details(body)
    text = f"{provider} answered {status}: {words}"
    if status in RETRYABLE or status >= 500 or code in busy_codes:
        after = retry_after(headers.get("Retry-After", ""))
        return ProviderUnavailable(text) if after is None else Retry(text, after=after)
    if status in REFUSED:
        return ProviderRefused(text)
    return Reject(text)


def retry_after(value: str, now_s: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date); None if absent or bad."""
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now_s is None else now_s)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class _Error(msgspec.Struct):
    """The reason fields of the providers' error bodies: Twilio's `message` and
    `code`, RFC 9457's `detail` and `title`, Meta's nested `error`."""

    message: str = ""
    code: int | str | None = None
    detail: str = ""
    title: str = ""
    error: _Error | str | None = None


_error = msgspec.json.Decoder(_Error)


def reason(body: bytes) -> str:
    """The provider's own words for a failure, for the job's record."""
    return details(body)[0]


def details(body: bytes) -> tuple[str, int | str | None]:
    """The provider's words for a failure and its error code, if it gave one."""
    try:
        found = _error.decode(body)
    except msgspec.DecodeError:
        return body.decode(errors="replace").strip()[:300] or "no reason given", None
    if isinstance(found.error, _Error):
        return details(msgspec.json.encode(found.error))
    words = found.message or found.detail or found.title or (found.error or "")
    if not words:
        return body.decode(errors="replace").strip()[:300] or "no reason given", found.code
    return (f"{words} (code {found.code})" if found.code is not None else words), found.code
