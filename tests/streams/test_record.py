"""The job record's two owners, streams/record.py and streams/lib/record.lua, read
and write the same format; records of the release before the state letters are
still read and acted on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.streams import envelope as env
from sluice.streams import record as rec
from sluice.streams.cancel import cancel_job
from sluice.streams.connection import Redis, RedisSettings, connect
from sluice.streams.consume import ensure_group, read
from sluice.streams.delayed import promote_due
from sluice.streams.jobs import get_job
from sluice.streams.keys import PartitionKeys
from sluice.streams.lua import LIB, Script
from sluice.streams.settle import Completed, settle
from tests.redis_server import RedisServer

KEYS = PartitionKeys("fn", 0)
STREAMS = Path(rec.__file__).parent

# Every field as the library reads it, its format of that, and what the functions
# for the hot paths read from the same text.
PROBE = b"""
local r = Record.parse(ARGV[1])
return {r.state, r.workspace, r.entry or '', r.backlog or '', r.priority or '', r.at,
  r.attempts, r.finished, r.dead, r.links, r.tail, Record.format(r), Record.state(ARGV[1]),
  Record.workspace(ARGV[1]), {Record.delayed_job(ARGV[1])}, {Record.backlogged_job(ARGV[1])},
  Record.letter(ARGV[1]) or false}
"""

_token = st.from_regex(r"[A-Za-z0-9_.:\-]{1,12}", fullmatch=True)
_ms = st.integers(0, 2**47)
_entry = st.builds("{}-{}".format, _ms, st.integers(0, 99))
_backlog = st.builds("b{}{:012d}".format, st.integers(0, 2), st.integers(0, 10**12 - 1))
_links = st.lists(_token, max_size=3).map(" ".join)


@st.composite
def records(draw: st.DrawFn) -> rec.Record:
    state = draw(st.sampled_from(get_args(rec.State)))
    place: dict[str, Any] = {}
    if state == "delayed":
        place["priority"] = draw(st.integers(0, 2))
    elif state == "queued" and draw(st.booleans()):
        place["backlog"] = draw(_backlog)
    else:
        place["entry"] = draw(_entry)
    return rec.Record(
        state=state,
        workspace=draw(_token),
        at=draw(_ms),
        attempts=draw(st.integers(0, 1000)),
        finished=draw(_ms),
        # A completed or dead job that ran keeps how long its last attempt ran.
        ran=draw(st.none() | st.integers(0, 10**7)) if state in ("completed", "dead") else None,
        dead=draw(_entry) if state == "dead" else "",
        links=draw(_links),
        tail=draw(st.binary(max_size=300)),
        **place,
    )


def _stored_in_full(data: bytes, state: str) -> bytes:
    """The record as the release before the state letters wrote it."""
    return state.encode() + data[1:]


def test_python_format_lua_parse_python_parse_round_trip(
    shared_server: RedisServer, tmp_path: Path
) -> None:
    probe = tmp_path / "probe.lua"
    probe.write_bytes(PROBE)
    script = Script(probe, [STREAMS / LIB / "record.lua"])
    runner = asyncio.Runner()
    redis = connect(RedisSettings(url=shared_server.url))
    try:

        @settings(max_examples=300, deadline=None)
        @given(record=records(), in_full=st.booleans())
        def check(record: rec.Record, in_full: bool) -> None:
            data = rec.format(record)
            if in_full:
                data = _stored_in_full(data, record.state)
            assert rec.parse(data) == record
            reply: Any = runner.run(script(redis, [], [data]))
            state, workspace, entry, backlog, priority, at, attempts, finished = reply[:8]
            dead, links, tail, formatted, state_of, workspace_of = reply[8:14]
            delayed_job, backlogged_job, letter = reply[14:]
            assert (state, workspace, entry, backlog) == (
                record.state.encode(), record.workspace.encode(),
                record.entry.encode(), record.backlog.encode(),
            )  # fmt: skip
            assert priority == ("" if record.priority is None else str(record.priority)).encode()
            assert (at, attempts, finished) == (
                str(record.at).encode(), str(record.attempts).encode(),
                (str(record.finished) + ("" if record.ran is None else f":{record.ran}")).encode(),
            )  # fmt: skip
            assert (dead, links, tail) == (record.dead.encode(), record.links.encode(), record.tail)
            assert rec.parse(formatted) == record
            assert formatted == rec.format(record)
            assert (state_of, workspace_of) == (state, workspace)
            assert delayed_job == (
                [workspace, priority, attempts, links, tail] if record.state == "delayed" else []
            )
            waiting = record.state == "queued" and record.backlog
            assert backlogged_job == ([attempts, links, tail] if waiting else [])
            assert letter == (dead if record.state == "dead" else None)

        check()
    finally:
        runner.run(redis.aclose())
        runner.close()


def _envelope(job_id: str) -> env.Envelope:
    return env.Envelope(job_id, "fn", "ws", env.encode_payload({"x": 1}), env.now_ms())


async def test_a_delayed_record_of_the_previous_release_is_promoted_run_and_settled(
    redis: Redis,
) -> None:
    await ensure_group(redis, KEYS)
    envelope = env.encode(_envelope("old"))
    await redis.hset(KEYS.jobs, "old", b"delayed|ws|1|1000|0|0|||" + envelope)
    await redis.zadd(KEYS.delayed, {"old": 1000})
    shown = await get_job(redis, KEYS, "old")
    assert shown is not None
    assert (shown.state, shown.due_ms, shown.priority) == ("delayed", 1000, "normal")
    assert (await promote_due(redis, KEYS, 10)).moved == 1
    (delivery,) = await read(redis, KEYS, "c1", 10, 100)
    assert delivery.envelope == envelope
    done = Completed(delivery.entry_id, "old", "ws", 1)
    assert (await settle(redis, KEYS, "c1", 60_000, [done], 1)).count == 1
    shown = await get_job(redis, KEYS, "old")
    assert shown is not None
    assert (shown.state, shown.attempts) == ("completed", 1)


async def test_a_queued_record_of_the_previous_release_is_cancelled(redis: Redis) -> None:
    await ensure_group(redis, KEYS)
    eid: Any = await redis.xadd(KEYS.stream, {"e": env.encode(_envelope("old")), "w": "ws"})
    await redis.hset(KEYS.jobs, "old", b"queued|ws|" + eid + b"|1000|0|0|||")
    assert await cancel_job(redis, KEYS, ["old"]) == "cancelled"
    assert await redis.xlen(KEYS.stream) == 0
    shown = await get_job(redis, KEYS, "old")
    assert shown is not None
    assert (shown.state, shown.queued_ms) == ("cancelled", 1000)
