"""Phone numbers in E.164, as the SMS and WhatsApp functions take them.

A number with its `+` and country code is taken as it is; a national one
(`5550100`, `030 1234567`) is read in its workspace's region
(`SLUICE_SMS_REGIONS`), else the deployment's default region
(`SLUICE_SMS_DEFAULT_REGION`). The check is Google's libphonenumber
(`phonenumbers`): a number of a length no number of its country has is refused,
but one merely unassigned is not (fictional 555 numbers pass), since a carrier
tells that better than a table that ages.

The region comes from `current_settings()` where the process set it (workers,
and the ingress for the requests it serves), and the workspace from
`in_workspace`, which whoever decodes an event's data wraps the decoding in (the
client per event, the ingress per event when workspaces have regions): the input
types normalise in their `__post_init__`, which is where publish-time validation
runs, and a Struct's decoding can be handed nothing else. Elsewhere (a Python `Client` in an app)
there is no default region, and a number must be international.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar

import phonenumbers

from sluice.runtime.settings import current_settings
from sluice.streams.errors import ConfigurationError

_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "a length no number of its country has",
}
_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


# The workspace whose event is being decoded ("": none known).
_workspace: ContextVar[str] = ContextVar("sluice_phones_workspace", default="")


@contextlib.contextmanager
def in_workspace(workspace: str) -> Iterator[None]:
    """Numbers checked inside are read in `workspace`'s region, if it has one."""
    token = _workspace.set(workspace)
    try:
        yield
    finally:
        _workspace.reset(token)


def regional() -> bool:
    """Some workspace has a region of its own: decoding must know the workspace."""
    try:
        return bool(current_settings().sms.regions)
    except ConfigurationError:
        return False


def default_region() -> str:
    """The region national numbers are read in: the workspace's, else the
    deployment's ("" where the process has no settings)."""
    try:
        sms = current_settings().sms
    except ConfigurationError:
        return ""
    return sms.regions.get(_workspace.get(), sms.default_region)


def e164(number: str, field: str) -> str:
    """`number` as E.164 (`+4930123456`); raises ValueError naming `field` and why not."""
    region = default_region()
    try:
        return _e164(number, region)
    except _NotANumber as exc:
        raise ValueError(f"`{field}` {number!r} is not a phone number: {exc}") from None


class _NotANumber(Exception):
    """Why a number is refused, without the field's name (which its caller adds)."""


# Parsing costs about 0.1 ms, and a campaign's number is checked again at each
# step's publish (and in the handler that builds them): one seen is known.
# Refusals raise, so only good numbers are kept.
@functools.lru_cache(maxsize=65_536)
def _e164(number: str, region: str) -> str:
    try:
        parsed = phonenumbers.parse(number, region or None)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "not a phone number")
        if not region and exc.error_type == exc.INVALID_COUNTRY_CODE and "+" not in number:
            reason = (
                "a national number, and no default region (SLUICE_SMS_DEFAULT_REGION):"
                " give + and its country code"
            )
        raise _NotANumber(reason) from None
    result = phonenumbers.is_possible_number_with_reason(parsed)
    if result not in (
        phonenumbers.ValidationResult.IS_POSSIBLE,
        phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ):
        raise _NotANumber(_REASONS.get(result, "not a possible number"))
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
