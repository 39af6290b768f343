"""A request aiohttp's parser refuses (a line over its limits, a header it cannot
read, a broken chunked or compressed body, bytes that are no HTTP) is answered by
the ingress with a problem of its own: 4xx, and none of the refused bytes quoted
back or logged (aiohttp's own answer quotes them, an API key with them). Sent over
a raw socket, as a client's bytes arrive; the ingress serves on after each."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Callable

import msgspec
import pytest
from aiohttp.http_exceptions import TransferEncodingError
from aiohttp.test_utils import make_mocked_request

from sluice.runtime.ingress.app import problem_for
from tests.chaos.security import leaks
from tests.ingress.conftest import Api

PROBLEM = "application/problem+json"

# Each: the bytes sent, given the key to hide in them, and the status answered.
CASES: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "header over 8190 bytes": (
        lambda key: (
            b"GET /v1/queues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key
            + b"x" * 9000
            + b"\r\n\r\n"
        ),
        431,
    ),
    "request line over 8190 bytes": (
        lambda key: b"GET /v1/jobs/" + key + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        431,
    ),
    "header name with a space": (
        lambda key: b"GET /v1/queues HTTP/1.1\r\nHost: x\r\nAuth orization " + key + b": v\r\n\r\n",
        400,
    ),
    "control character in a header value": (
        lambda key: (
            b"GET /v1/queues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\x01\r\n\r\n"
        ),
        400,
    ),
    "more than 128 headers": (
        lambda key: (
            b"GET /v1/queues HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: %s\r\n" % (n, key) for n in range(200))
            + b"\r\n"
        ),
        400,
    ),
    "chunk size that is no number": (
        lambda key: (
            b"POST /v1/events/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz"
            + key
            + b"\r\n"
        ),
        400,
    ),
    "gzip body that is no gzip": (
        lambda key: (
            b"POST /v1/events/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key
            + b"\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: "
            + str(len(key) + 10).encode()
            + b"\r\n\r\n"
            + gzip.compress(b"{}")[:10]
            + key
        ),
        400,
    ),
    "no HTTP at all": (lambda key: key + b" \x00\x01 hello\r\n\r\n", 400),
    "TLS to the plain port": (lambda key: b"\x16\x03\x01\x02\x00\x01" + key + b"\r\n\r\n", 400),
}


async def send(api: Api, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """`data` over a new connection: the status, headers and body answered."""
    reader, writer = await asyncio.open_connection(api.http.host, api.http.port)
    try:
        writer.write(data)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        line, *fields = head.decode("latin-1").split("\r\n")[:-2]
        headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        return int(line.split()[1]), headers, head + body
    finally:
        writer.close()


@pytest.mark.parametrize("case", CASES)
async def test_a_request_the_parser_refuses_is_a_problem_quoting_none_of_it(
    api: Api, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.DEBUG)
    key = api.keys["acme"]
    build, expected = CASES[case]
    status, headers, raw = await send(api, build(key.encode()))
    assert status == expected, raw[:500]
    assert headers["content-type"] == PROBLEM
    body = msgspec.json.decode(raw.partition(b"\r\n\r\n")[2])
    assert body["status"] == status
    assert body["detail"]
    assert leaks(raw.decode("latin-1"), {"API key": key}) == []
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert leaks(logged, {"API key": key}) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # The ingress serves on.
    assert (await api.http.get("/healthz")).status == 200


def test_a_parser_error_a_route_reads_is_a_400_quoting_none_of_it() -> None:
    """aiohttp's Python parser (no C extension for the platform, or
    AIOHTTP_NO_EXTENSIONS) raises its own error, with the bytes, where the C one
    raises RequestPayloadError (the gzip case above)."""
    key = "sk_" + "k" * 43
    answer = problem_for(make_mocked_request("POST", "/v1/events/tasks"),
                         TransferEncodingError(f"zz{key}"))  # fmt: skip
    assert answer.status == 400
    assert answer.content_type == PROBLEM
    assert isinstance(answer.body, bytes)
    assert leaks(answer.body.decode(), {"API key": key}) == []
