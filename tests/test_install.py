"""Sluice installed as a library from its wheel, beside a user's project with its own
`functions/` (and its own `sluice.runtime` and `sluice.streams` packages, names Sluice's folders
have in this repository): the console script runs that project's handlers, not this
repository's, and the project's packages are its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.install import install_wheel
from tests.redis_server import RedisServer
from tests.runtime.helpers import wait_until

ROOT = Path(__file__).parent.parent

USER_FUNCTIONS = """
import os

import msgspec

from PROJECT_PACKAGE import SALUTATION
from sluice.runtime import Job, function


class Greeting(msgspec.Struct):
    name: str


@function("greet", input=Greeting)
async def greet(job: Job[Greeting]) -> None:
    with open(os.environ["GREETED_FILE"], "a") as out:
        out.write(f"{SALUTATION} {job.data.name}\\n")


FUNCTIONS = (greet,)
"""

PUBLISH = """
import asyncio, os
from sluice.runtime import Client
from sluice.runtime.registry import load
from sluice.streams.connection import RedisSettings, connect


async def main() -> None:
    redis = connect(RedisSettings(url=os.environ["REDIS_URL"]))
    await Client(redis, load("functions:FUNCTIONS")).publish(
        "greet", workspace="acme", data={"name": "ada"}
    )
    await redis.aclose()


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (tests/install.py)."""
    return install_wheel(ROOT, tmp_path_factory.mktemp("install"))


async def test_the_installed_console_script_runs_the_projects_own_functions(
    installed: Path, shared_server: RedisServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "functions").mkdir(parents=True)
    # Its functions import its own `sluice.runtime` package (spelt so here that no
    # renaming of Sluice's imports ever touches it).
    text = textwrap.dedent(USER_FUNCTIONS).replace("PROJECT_PACKAGE", "runtime")
    (project / "functions" / "__init__.py").write_text(text)
    # The project's own packages named like Sluice's folders in this repository.
    for own in ("runtime", "streams"):
        (project / own).mkdir()
        (project / own / "__init__.py").write_text('SALUTATION = "hello"\n')
    greeted, log = tmp_path / "greeted", tmp_path / "worker.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PYTHON"))},
        "REDIS_URL": shared_server.url,
        "GREETED_FILE": str(greeted),
    }
    worker = start(installed, project, env, log)
    try:
        python = str(installed / "bin" / "python")
        await asyncio.to_thread(
            subprocess.run, [python, "-c", PUBLISH], cwd=project, env=env, check=True
        )

        async def done() -> bool:
            return greeted.exists() or worker.poll() is not None

        await wait_until(done, what="the project's handler to run")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    text = log.read_text()
    assert greeted.read_text() == "hello ada\n", text
    assert "consuming greet" in text


def start(venv: Path, project: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`sluice worker` as a user runs it: the console script, in the project's folder."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(venv / "bin" / "sluice"), "worker"], cwd=project, env=env, stdout=out, stderr=out
        )
