"""The job record: the one place its format is written down, and the only Python
that reads or writes one (streams/lib/record.lua is its twin in the scripts).

A job's record is one field of its partition's `jobs` HASH (field: the stored job
id), one string of nine fields joined by `|`:

    state|workspace|place|at|attempts|finished|dead|links|tail

- state: one letter: q queued, d delayed, c completed, x dead, k cancelled,
  e expired. A record of a release before the letters names it in full
  ("queued", ...), and is read the same; active is not stored (a queued job whose
  entry a worker holds).
- workspace: the job's workspace.
- place, by state: a delayed job's priority digit (0 high, 1 normal, 2 low; ""
  in a record of a release before priorities: normal); "b<priority><sequence>"
  for a queued job waiting in its workspace's backlog (streams/lib/admit.lua);
  otherwise the stream entry id of a job in the stream, and of a finished job its
  last one. Read, it is one of the named fields `priority`, `backlog`, `entry`.
- at: Redis time (ms) it was queued, or for a delayed job when it falls due (the
  delayed set's score). A record of an older release may hold a time of 1e14 or
  more as "2.53402300799e+14".
- attempts: attempts that have ended; the running or next one is attempts + 1.
- finished: Redis time (ms) it was settled; 0 while unsettled. A completed or
  dead job whose handler ran adds ":" and how long its last attempt ran (ms):
  "1798613277095:153" (its start is told from the two; a record of an older
  release has no ":").
- dead: a dead job's dead-letter entry id ("" for any other).
- links: its business key and tags (`sluice.streams.keys.links`), released when it ends.
- tail, which may hold any byte (it runs to the end of the string): a delayed or
  backlogged job's envelope (streams.envelope; a retry's holds the error and the
  bounded traceback of each failed attempt, one that never failed neither), a
  completed job's result (msgpack, "" for none), a dead job's last error (its
  dead letter's envelope has every error and traceback), else "".

One HASH for all the records of a partition, not a key per job: a settle writes
every record of its batch in one variadic HSET, and retention drops records by
id without naming a key per job.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from sluice.streams import envelope as env

# As stored; "active" is a queued job that a worker holds (streams.jobs).
State = Literal["queued", "delayed", "completed", "dead", "cancelled", "expired"]

CODES: dict[str, bytes] = {
    "queued": b"q",
    "delayed": b"d",
    "completed": b"c",
    "dead": b"x",
    "cancelled": b"k",
    "expired": b"e",
}
_STATES: dict[bytes, State] = {
    **{code: msgspec.convert(state, State) for state, code in CODES.items()},
    **{state.encode(): msgspec.convert(state, State) for state in CODES},
}


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One job's record; `place` under the name of what it is (see the module)."""

    state: State
    workspace: str
    # In the stream, or the last entry of a finished job.
    entry: str = ""
    # Waiting in the workspace's backlog: "b<priority><sequence>".
    backlog: str = ""
    # Delayed: the priority it will be queued at.
    priority: int | None = None
    at: int = 0
    attempts: int = 0
    finished: int = 0
    # How long the last attempt ran (ms), for a completed or dead job that ran.
    ran: int | None = None
    dead: str = ""
    links: str = ""
    tail: bytes = b""

    @property
    def place(self) -> str:
        return self.entry or self.backlog or ("" if self.priority is None else str(self.priority))


def parse(data: bytes) -> Record:
    """Read a record; raises ValueError for bytes that are not one."""
    fields = data.split(b"|", 8)
    if len(fields) != 9 or fields[0] not in _STATES:
        raise ValueError(f"not a job record: {data[:40]!r}")
    code, workspace, place, at, attempts, finished, dead, links, tail = fields
    state = _STATES[code]
    text = place.decode()
    entry = backlog = ""
    priority = None
    if state == "delayed":
        priority = int(text) if text else env.NORMAL
    elif text.startswith("b"):
        backlog = text
    else:
        entry = text
    finished, ran_mark, ran = finished.partition(b":")
    return Record(
        state=state,
        workspace=workspace.decode(),
        entry=entry,
        backlog=backlog,
        priority=priority,
        at=_ms(at),
        attempts=int(attempts),
        finished=_ms(finished),
        ran=int(ran) if ran_mark else None,
        dead=dead.decode(),
        links=links.decode(),
        tail=tail,
    )


def format(record: Record) -> bytes:
    """The stored form of `record` (Record.format in the scripts)."""
    head = "|".join(
        (
            record.workspace,
            record.place,
            str(record.at),
            str(record.attempts),
            str(record.finished) if record.ran is None else f"{record.finished}:{record.ran}",
            record.dead,
            record.links,
        )
    )
    return b"%s|%s|%s" % (CODES[record.state], head.encode(), record.tail)


def _ms(field: bytes) -> int:
    """A time of the record. Before due times were bounded (runtime.client.timing), Lua
    wrote one of 1e14 ms or more as "2.53402300799e+14"; such records may remain."""
    try:
        return int(field)
    except ValueError:
        return round(float(field))
