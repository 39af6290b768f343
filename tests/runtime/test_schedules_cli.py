"""`sluice schedules list|add|remove` against Redis with the process's settings."""

from __future__ import annotations

import os
import subprocess
import sys

from sluice.runtime import Repeats
from sluice.runtime.registry import load
from sluice.streams.connection import Redis
from tests.redis_server import RedisServer
from tests.runtime.helpers import SAMPLE


def sluice(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    environ.update(REDIS_URL=url, SLUICE_FUNCTIONS=SAMPLE)
    return subprocess.run([sys.executable, "-m", "sluice", "schedules", *args], env=environ,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


async def test_add_list_and_remove(redis: Redis, shared_server: RedisServer) -> None:
    added = sluice(shared_server.url, "add", "tasks", "morning", "--workspace", "acme",
                   "--data", '{"n": 1}', "--cron", "0 9 * * mon-fri", "--zone", "Europe/Berlin",
                   "--start", "2027-03-26T00:00:00[Europe/Berlin]", "--limit", "3")  # fmt: skip
    assert added.returncode == 0, added.stderr
    # 26 March 2027 is a Friday; Berlin is on summer time from the 28th.
    assert added.stdout.split("\t") == [
        "tasks", "acme/morning", "cron 0 9 * * mon-fri Europe/Berlin", "active",
        "2027-03-26T09:00:00+01:00", "2027-03-29T09:00:00+02:00", "2027-03-30T09:00:00+02:00\n",
    ]  # fmt: skip
    assert sluice(shared_server.url, "add", "tasks", "poll", "--workspace", "other",
                  "--data", '{"n": 2}', "--every-ms", "60000").returncode == 0  # fmt: skip
    (stored,) = [s for s in await Repeats(redis, load(SAMPLE)).read("tasks") if s.name == "morning"]
    assert (stored.limit, stored.zone) == (3, "Europe/Berlin")

    listed = sluice(shared_server.url, "list", "--workspace", "acme")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "tasks\tacme/morning\tcron 0 9 * * mon-fri Europe/Berlin\tactive\t2027-03-26T09:00:00+01:00"
    ]

    removed = sluice(shared_server.url, "remove", "tasks", "morning", "--workspace", "acme")
    assert removed.returncode == 0, removed.stderr
    again = sluice(shared_server.url, "remove", "tasks", "morning", "--workspace", "acme")
    assert again.returncode == 1
    assert "no schedule 'morning'" in again.stderr


def test_bad_input_is_one_line_and_exit_1(shared_server: RedisServer) -> None:
    for args, message in [
        (["--data", "{", "--every-ms", "60000"], "sluice: "),
        (["--data", "{}", "--every-ms", "60000", "--limit", "0"], "limit must be"),
    ]:
        done = sluice(shared_server.url, "add", "tasks", "bad", "--workspace", "acme", *args)
        assert done.returncode == 1
        assert done.stderr.startswith("sluice: ")
        assert message in done.stderr
