"""Pure functions of the data layer: partition map, keys, envelope round trips."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.streams import envelope as env
from sluice.streams.errors import InvalidName
from sluice.streams.keys import (
    PartitionKeys,
    check_function_name,
    check_token,
    given_id,
    job_ref,
    partition_of,
    shown_id,
)

tokens = st.from_regex(r"[A-Za-z0-9_.:\-]{1,128}", fullmatch=True)


@given(workspace=st.text(min_size=1), partitions=st.integers(1, 1024))
def test_partition_map_is_total_and_in_range(workspace: str, partitions: int) -> None:
    p = partition_of(workspace, partitions)
    assert 0 <= p < partitions
    assert partition_of(workspace, partitions) == p


def test_partition_map_is_stable_across_processes() -> None:
    # Python's hash() is salted per process; the map must not be.
    code = (
        "from sluice.streams.keys import partition_of;"
        "print([partition_of(f'ws{i}', 16) for i in range(50)])"
    )
    # Started together: each spends its time importing.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
            env={"PYTHONHASHSEED": str(seed)},
        )
        for seed in (1, 2, 3)
    ]  # fmt: skip
    outputs = {p.communicate(timeout=60)[0] for p in processes}
    assert [p.returncode for p in processes] == [0, 0, 0]
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([partition_of(f"ws{i}", 16) for i in range(50)])


def test_partition_map_spreads_workspaces() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[partition_of(f"workspace-{i}", 8)] += 1
    assert min(counts) > 800


@given(name=st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,20}", fullmatch=True), p=st.integers(0, 1023))
def test_every_key_of_a_partition_shares_one_hash_tag(name: str, p: int) -> None:
    keys = PartitionKeys(check_function_name(name), p)
    tag = f"{{{name}#{p}}}"
    for key in (keys.stream, keys.stats, keys.dead, keys.jobs, keys.done):
        # Redis Cluster hashes only the part between the first { and the next }.
        start = key.index("{")
        assert key[start : key.index("}", start) + 1] == tag


@pytest.mark.parametrize("bad", ["", "Upper", "a b", "a{b}", "a#1", "x" * 101])
def test_bad_function_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_function_name(bad)


@pytest.mark.parametrize("bad", ["", "a b", "{tag}", "x" * 129, "é"])
def test_bad_tokens_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_token("workspace", bad)


payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(
    job_id=tokens, workspace=tokens, payload=payloads, attempt=st.integers(1, 1000),
    created=st.integers(0, 2**48), trace=st.none() | st.dictionaries(st.text(), st.text()),
)  # fmt: skip
def test_envelope_round_trips(
    job_id: str, workspace: str, payload: object, attempt: int, created: int,
    trace: dict[str, str] | None,
) -> None:  # fmt: skip
    original = env.Envelope(
        job_id, "fn", workspace, env.encode_payload(payload), created, attempt, trace
    )
    decoded = env.decode(env.encode(original))
    assert decoded == original
    assert msgspec.msgpack.decode(decoded.payload) == payload


def test_old_envelopes_decode_with_defaults_for_new_fields() -> None:
    # An envelope written before `attempt` and `trace` existed (array of 5 fields).
    old = msgspec.msgpack.encode(["id1", "fn", "ws", 1, 1000])
    decoded = env.decode(old)
    assert (decoded.attempt, decoded.trace) == (1, None)


def test_job_ids_sort_by_creation_time() -> None:
    before = env.now_ms()
    ids = [env.new_job_id() for _ in range(1000)]
    after = env.now_ms()
    # base32hex is Python's base 32: the top 48 of the 130 bits are the ms.
    made = [int(i, 32) >> 82 for i in ids]
    assert made == sorted(made)
    assert before <= made[0]
    assert made[-1] <= after
    assert len(set(ids)) == 1000
    assert all(len(i) == 26 for i in ids)
    first, later = ids[0], ids[-1]
    assert first[:9] <= later[:9]


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    env.new_job_id()  # the parent now holds random bytes for its next ids
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, "".join(env.new_job_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 1024).decode()
    os.close(read)
    ours = "".join(env.new_job_id() for _ in range(3))
    # The time part may match; the random part may not.
    assert {theirs[i + 10 : i + 26] for i in (0, 26, 52)}.isdisjoint(
        ours[i + 10 : i + 26] for i in (0, 26, 52)
    )


@given(workspace=tokens, other=tokens, job_id=tokens)
def test_a_given_id_is_its_workspaces_own_and_shown_as_given(
    workspace: str, other: str, job_id: str
) -> None:
    stored = given_id(workspace, job_id)
    assert shown_id(stored) == job_id
    assert (given_id(other, job_id) == stored) == (other == workspace)
    # Found by the id as given in its workspace, or by the stored id in it only.
    assert stored in job_ref(job_id, workspace)[1]
    assert job_ref(stored, None) == (workspace, [stored])
    assert job_ref(stored, other)[1] == ([stored] if other == workspace else [])
    # A generated id stays as it is: found in any workspace, the scripts check whose.
    generated = env.new_job_id()
    assert shown_id(generated) == generated
    assert job_ref(generated, None) == (None, [generated])
    assert job_ref(generated, other) == (other, [given_id(other, generated), generated])
