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


# Random bytes for ids, 17 each, read from os.urandom POOL at a time: a system
# call per id was a third of making it. list.pop is one step under the GIL, so
# threads never share a chunk; a forked child drops its copy of the parent's.
POOL = 256
_random: list[bytes] = []
os.register_at_fork(after_in_child=_random.clear)


def _noise() -> bytes:
    try:
        return _random.pop()
    except IndexError:
        block = os.urandom(17 * POOL)
        _random.extend(block[i : i + 17] for i in range(0, 17 * POOL, 17))
        return _random.pop()


class _Prefix:
    """The time part of the ids made within one millisecond, made once for them:
    (ms, text), replaced as one tuple so a thread never pairs one ms's text with
    another ms."""

    last: tuple[int, str] = (-1, "")


def new_job_id() -> str:
    """A 26-character id that sorts by creation time: 48 bits of epoch ms, then 82
    random bits, in base32hex (which keeps byte order in string order, so ids sort
    like ULIDs).

    The random bits come from os.urandom (read for many ids at once), not the
    faster random module, whose output can be predicted from enough ids: a tenant
    could then publish another's next id first and have that publish dropped as a
    duplicate. They are turned
    into characters by one bytes.translate, and the time part is made once per
    millisecond: this runs for every job published, and big-integer arithmetic
    on the whole id was most of preparing a publish (bench.instructions).
    """
    ms = time.time_ns() // 1_000_000
    noise = _noise()
    last_ms, prefix = _Prefix.last
    if last_ms != ms:
        # 45 of the 48 time bits: 9 characters.
        p = _PAIRS
        high = ms >> 3
        prefix = (
            p[high >> 35 & 1023] + p[high >> 25 & 1023] + p[high >> 15 & 1023]
            + p[high >> 5 & 1023] + _ALPHABET[high & 31]
        )  # fmt: skip
        _Prefix.last = (ms, prefix)
    # The last 3 time bits and 2 random ones, then 16 random characters.
    return (
        prefix
        + _ALPHABET[(ms & 7) << 2 | noise[16] & 3]
        + noise[:16].translate(_RANDOM_CHARS).decode()
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000
