"""ARCHITECTURE.md's facts that can drift, held against the code."""

from __future__ import annotations

import re
from pathlib import Path

from sluice.streams.keys import CATALOGUE, PartitionKeys, global_limit
from tests.test_layout import NEVER, ROLES

DOC = Path(__file__).parent.parent / "ARCHITECTURE.md"

# PartitionKeys' slots that are not keys: what it was made from, and the tag.
NOT_KEYS = {"function", "partition", "tag"}


def key_table() -> list[str]:
    """The names in the first column of the Redis keys table."""
    section = DOC.read_text().split("## Redis keys", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z]+)` \|", section, re.M)


def test_the_key_table_lists_every_key_of_a_partition_once() -> None:
    names = key_table()
    assert len(names) == len(set(names))
    assert set(names) == set(PartitionKeys.__slots__) - NOT_KEYS


def test_every_key_carries_the_partitions_hash_tag() -> None:
    keys = PartitionKeys("sms.send", 3)
    for name in key_table():
        assert getattr(keys, name) == f"sluice:{{sms.send#3}}:{name}"


def test_the_keys_outside_the_partitions_are_described() -> None:
    section = DOC.read_text().split("## Redis keys", 1)[1].split("\n## ", 1)[0]
    outside = (CATALOGUE, global_limit("<function>"), "sluice:{webhooks}:endpoints:")
    for key in (*outside, "sluice:{webhooks}:settled:"):
        assert f"`{key}" in section


def role_table() -> dict[str, set[str]]:
    """Role -> the roles ARCHITECTURE.md says it may import."""
    section = DOC.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for role, imports in re.findall(
        r"^\| (base|`\w+/`)[^|]* \| [^|]+ \| ([^|]+) \|$", section, re.M
    ):
        name = role.strip("`/")
        table[name] = set() if imports.startswith("no role") else set(imports.split(", "))
    return table


def test_the_role_table_says_what_the_layout_test_enforces() -> None:
    everything = ROLES | {"base"}
    expected = {role: everything - NEVER[role] - {role} for role in everything}
    assert role_table() == expected
