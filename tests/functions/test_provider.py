"""How a provider's answer settles a job, without a server: statuses, Retry-After, reasons."""

from __future__ import annotations

import email.utils

import pytest

from functions.provider import (
    ProviderRefused,
    ProviderUnavailable,
    basic_auth,
    failure,
    reason,
    retry_after,
)
from sluice.runtime import Reject, Retry


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("") is None
    assert retry_after("soon") is None
    assert retry_after("nan") is None
    assert retry_after("30") == 30.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("-4") == 0.0
    assert retry_after("99999999") == 86_400.0
    now = 1_800_000_000.0
    assert retry_after(email.utils.formatdate(now + 120, usegmt=True), now_s=now) == 120.0
    assert retry_after(email.utils.formatdate(now - 120, usegmt=True), now_s=now) == 0.0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"code": 21211, "message": "Invalid To", "status": 400}', "Invalid To (code 21211)"),
        (b'{"title": "Bad Request", "detail": "to is missing"}', "to is missing"),
        (
            b'{"error": {"message": "(#131030) Recipient not allowed", "code": 131030}}',
            "(#131030) Recipient not allowed (code 131030)",
        ),
        (b'{"error": "invalid_number"}', "invalid_number"),
        (b"plain words\n", "plain words"),
        (b"[1, 2]", "[1, 2]"),
        (b"", "no reason given"),
    ],
)
def test_reason_finds_the_providers_words(body: bytes, words: str) -> None:
    assert reason(body) == words


def test_statuses_map_to_outcomes() -> None:
    busy = failure("twilio", 429, {"Retry-After": "7"}, b"{}")
    assert isinstance(busy, Retry)
    assert busy.after_s == 7.0
    assert isinstance(failure("twilio", 503, {}, b"{}"), ProviderUnavailable)
    assert isinstance(failure("twilio", 502, {"Retry-After": "2"}, b"{}"), Retry)
    assert isinstance(failure("twilio", 408, {}, b"{}"), ProviderUnavailable)
    assert isinstance(failure("twilio", 401, {}, b"{}"), ProviderRefused)
    rejected = failure("twilio", 400, {}, b'{"message": "Invalid To", "code": 21211}')
    assert isinstance(rejected, Reject)
    assert str(rejected) == "twilio answered 400: Invalid To (code 21211)"
    assert isinstance(failure("twilio", 404, {}, b""), Reject)


def test_basic_auth() -> None:
    # RFC 7617's example.
    assert basic_auth("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
