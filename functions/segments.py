"""How many SMS segments a body takes: what carriers bill, and what a long message is split into.

A body of GSM-7 characters only (GSM 03.38's default alphabet, plus its
extension table at two septets each) fits 160 septets in one message, or 153
per segment once split (the rest is the concatenation header). Any other
character sends the whole body as UCS-2: 70 UTF-16 units, or 67 per segment.
A segment never splits an escaped character or a surrogate pair, as phones
would not reassemble it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Sent as an escape and the character: two septets each.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

Encoding = Literal["GSM-7", "UCS-2"]


class Segments(msgspec.Struct, frozen=True):
    count: int
    encoding: Encoding


def count_segments(body: str) -> Segments:
    if all(c in GSM7 or c in GSM7_EXTENSION for c in body):
        units = [2 if c in GSM7_EXTENSION else 1 for c in body]
        return Segments(_split(units, single=160, part=153), "GSM-7")
    units = [2 if ord(c) > 0xFFFF else 1 for c in body]
    return Segments(_split(units, single=70, part=67), "UCS-2")


def _split(units: list[int], *, single: int, part: int) -> int:
    """Segments for characters of `units` each: one if all fit `single`, else
    filled greedily to `part`, a character never split across two."""
    if sum(units) <= single:
        return 1
    count, room = 1, part
    for size in units:
        if size > room:
            count, room = count + 1, part
        room -= size
    return count
