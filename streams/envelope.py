"""The envelope: what one stream entry carries for one job.

Encoded with msgpack into a single stream field. The payload stays `msgspec.Raw`
(the msgpack bytes of the function's input), so this layer never knows handler
types and the worker decodes the payload once, straight into the input Struct.

Schema evolution (msgspec's rules, as the struct is array-like): never reorder
or remove fields; a new field goes at the end with a default, so old entries
still decode and old workers ignore what they do not know.
"""

from __future__ import annotations

import os
import re
import time

import msgspec


class Envelope(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One job as it travels through Redis."""

    id: str
    function: str
    workspace: str
    payload: msgspec.Raw
    # The publisher's wall clock; Redis's own clock is in the stream entry id.
    created_ms: int
    attempt: int = 1
    # W3C trace context (traceparent, tracestate) of the publisher, if any.
    trace: dict[str, str] | None = None
    # The errors of earlier attempts, oldest first: what a dead letter shows.
    errors: tuple[str, ...] = ()
    # Epoch ms after which the job must not start (0: never expires).
    expires_ms: int = 0
    # A business key naming the one live job of its kind (booking:123:reminder-1h),
    # and tags to cancel jobs by (booking:123).
    key: str = ""
    tags: tuple[str, ...] = ()
    # HIGH, NORMAL or LOW: the order a workspace's waiting jobs enter the stream.
    priority: int = 1
    # Epoch ms it was due, by the publisher's clock, for one published for later
    # or a retry (0: at once): how late it started is measured from it.
    due_ms: int = 0
    # The tracebacks of earlier attempts beside `errors` (the same index; "" where
    # none was kept: a timeout, a `Retry`, an older attempt past the newest few the
    # worker keeps). Empty, and so not stored, for a job that never failed.
    tracebacks: tuple[str, ...] = ()


# Priorities as the scripts store them (streams/admit.lua): lower goes first.
HIGH, NORMAL, LOW = 0, 1, 2

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    """Decode an envelope; raises `msgspec.DecodeError` for bytes that are not one."""
    return _decoder.decode(data)


def encode_payload(value: object) -> msgspec.Raw:
    """msgpack-encode a handler input so it can sit in an envelope unchanged."""
    return msgspec.Raw(_encoder.encode(value))


# base32hex: each character 5 bits, in the alphabet's (and ASCII's) order.
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
# A random byte to a base32hex character: 256 is a multiple of 32, so each
# character is uniform.
_RANDOM_CHARS = bytes(ord(_ALPHABET[b % 32]) for b in range(256))
# The 10th character of an id holds the last 3 of its 48 time bits, then 2
# random bits: per value of those time bits, from a random character.
_TENTH = [{c: _ALPHABET[t << 2 | i & 3] for i, c in enumerate(_ALPHABET)} for t in range(8)]

# The random part of ids, 17 random characters each, read from os.urandom POOL
# ids at a time, translated and split in one go (a system call and a
# translation per id were most of making one). list.pop is one step under the
# GIL, so threads never share a part; a forked child drops its copy of the
# parent's.
POOL = 256
_random: list[str] = []
_PART = re.compile(".{17}", re.DOTALL)
os.register_at_fork(after_in_child=_random.clear)


def _random_part() -> str:
    try:
        return _random.pop()
    except IndexError:
        _random.extend(_PART.findall(os.urandom(17 * POOL).translate(_RANDOM_CHARS).decode()))
        return _random.pop()


class _Prefix:
    """The time part of the ids made within one millisecond, made once for them:
    (ms, its first 9 characters, its 10th per 2 random bits), replaced as one
    tuple so a thread never pairs one ms's text with another ms."""

    last: tuple[int, str, dict[str, str]] = (-1, "", {})


def new_job_id() -> str:
    """A 26-character id that sorts by creation time: 48 bits of epoch ms, then 82
    random bits, in base32hex (which keeps byte order in string order, so ids sort
    like ULIDs).

    The random bits come from os.urandom (read for many ids at once), not the
    faster random module, whose output can be predicted from enough ids: a tenant
    could then publish another's next id first and have that publish dropped as a
    duplicate. The time part is made once per millisecond: this runs for every
    job published (bench.instructions).
    """
    ms = time.time_ns() // 1_000_000
    part = _random_part()
    last_ms, nine, tenth = _Prefix.last
    if last_ms != ms:
        # 45 of the 48 time bits: 9 characters.
        p = _PAIRS
        high = ms >> 3
        nine = (
            p[high >> 35 & 1023] + p[high >> 25 & 1023] + p[high >> 15 & 1023]
            + p[high >> 5 & 1023] + _ALPHABET[high & 31]
        )  # fmt: skip
        tenth = _TENTH[ms & 7]
        _Prefix.last = (ms, nine, tenth)
    return nine + tenth[part[0]] + part[1:]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
