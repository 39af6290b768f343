"""SMS segment counting: GSM-7 (with its two-septet extension) against UCS-2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.segments import GSM7, GSM7_EXTENSION, Segments, count_segments


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a", Segments(1, "GSM-7")),
        ("a" * 160, Segments(1, "GSM-7")),
        ("a" * 161, Segments(2, "GSM-7")),
        ("a" * 306, Segments(2, "GSM-7")),
        ("a" * 307, Segments(3, "GSM-7")),
        # € takes two septets: 80 of them fill one message, 81 need two.
        ("€" * 80, Segments(1, "GSM-7")),
        ("€" * 81, Segments(2, "GSM-7")),
        # 306 septets would fill two segments exactly, but € at 153-154 moves on whole.
        ("a" * 152 + "€" + "a" * 152, Segments(3, "GSM-7")),
        ("é ü Ñ Ø £ ¥ § ¿ ¡", Segments(1, "GSM-7")),
        ("ç", Segments(1, "UCS-2")),  # lower-case ç is not in GSM-7, only Ç
        ("ł" * 70, Segments(1, "UCS-2")),
        ("ł" * 71, Segments(2, "UCS-2")),
        ("ł" * 134, Segments(2, "UCS-2")),
        ("ł" * 135, Segments(3, "UCS-2")),
        # An emoji is two UTF-16 units: 35 fit one message; a pair is never split.
        ("🙂" * 35, Segments(1, "UCS-2")),
        ("🙂" * 36, Segments(2, "UCS-2")),
        # 134 units would fill two segments exactly, but the pair at 67-68 moves on whole.
        ("ł" * 66 + "🙂" + "ł" * 66, Segments(3, "UCS-2")),
    ],
)
def test_segments(body: str, expected: Segments) -> None:
    assert count_segments(body) == expected


@given(st.text(alphabet=sorted(GSM7 | GSM7_EXTENSION), min_size=1, max_size=1600))
def test_gsm7_segments_hold_every_septet_and_no_more(body: str) -> None:
    septets = sum(2 if c in GSM7_EXTENSION else 1 for c in body)
    found = count_segments(body)
    assert found.encoding == "GSM-7"
    if septets <= 160:
        assert found.count == 1
    else:
        # Greedy filling wastes at most one septet per segment (a split escape).
        assert found.count * 153 >= septets
        assert (found.count - 1) * 152 < septets
