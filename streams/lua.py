"""Lua scripts kept in `.lua` files beside their callers, called by SHA.

Modelled on redis-py's script object: the SHA is computed locally, so the hot
path sends only EVALSHA; a NOSCRIPT reply (Redis restarted, or a new cluster
node) loads the source once and retries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import msgspec
import redis.exceptions

from sluice.streams.connection import Redis
from sluice.streams.errors import wrap_unavailable

Arg = str | bytes | int | float

# The folder of Lua libraries: tables of functions that entry scripts start with,
# never run on their own.
LIB = "lib"

_msgpack = msgspec.msgpack.Encoder()


def packed(values: Sequence[str | int]) -> bytes:
    """Many values as one argument, for a script to `cmsgpack.unpack`: per value it
    costs neither redis-py's packing of an argument nor Redis's making a Lua string
    of ARGV, which with many workspaces a call weighed on the whole call."""
    return _msgpack.encode(values)


class Script:
    """One Lua script file; every key it touches is passed in KEYS."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, path: Path, uses: Sequence[Path] = (), *, allow_oom: bool = False) -> None:
        self.name = path.name
        # Shared Lua (a library of local functions) goes first, as Redis runs one text.
        parts = [*(p.read_bytes() for p in uses), path.read_bytes()]
        if allow_oom:
            # Redis 7 script flags, which must open the text. Without them a script
            # on a full Redis (maxmemory, noeviction) fails at its first write that
            # may grow memory, having written nothing, so every script stays atomic;
            # with `allow-oom` it runs whole. Only for scripts that move or finish
            # work Redis already holds: refusing those would leave a full Redis full
            # for good, as only they drain it (README, Production Redis).
            parts.insert(0, b"#!lua flags=allow-oom")
        self.source = b"\n".join(parts)
        self.sha = hashlib.sha1(self.source).hexdigest()

    @classmethod
    def beside(
        cls, module_file: str, name: str, uses: Sequence[str] = (), *, allow_oom: bool = False
    ) -> Script:
        """Load `name` from the folder of the calling module (pass `__file__`),
        after the libraries named in `uses` (`lib/<name>.lua` in that folder), in
        that order. An entry script names them in its header (`-- uses: record
        admit`), which tests/streams/test_script_headers.py holds against `uses`."""
        folder = Path(module_file).parent
        return cls(folder / name, [folder / LIB / f"{u}.lua" for u in uses], allow_oom=allow_oom)

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Arg]) -> object:
        with wrap_unavailable():
            try:
                return await client.evalsha(self.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await client.script_load(self.source)
                return await client.evalsha(self.sha, len(keys), *keys, *args)
