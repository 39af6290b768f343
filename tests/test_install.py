"""Sluice installed as a library from its wheel, beside a user's project with its own
`functions/`: the console script runs that project's handlers, not this repository's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.redis_server import RedisServer
from tests.runtime.helpers import wait_until

ROOT = Path(__file__).parent.parent

USER_FUNCTIONS = """
import os

import msgspec

from runtime import Job, function


class Greeting(msgspec.Struct):
    name: str


@function("greet", input=Greeting)
async def greet(job: Job[Greeting]) -> None:
    with open(os.environ["GREETED_FILE"], "a") as out:
        out.write(f"hello {job.data.name}\\n")


FUNCTIONS = (greet,)
"""

PUBLISH = """
import asyncio, os
from runtime import Client
from runtime.registry import load
from streams.connection import RedisSettings, connect


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
    """A fresh virtualenv with the wheel installed; its dependencies are this one's
    (a path entry, so no download and none of this checkout's own packages)."""
    folder = tmp_path_factory.mktemp("install")
    wheels, venv = folder / "wheels", folder / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=folder,
    )
    (wheel,) = wheels.glob("sluice-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "functions" not in tops, "the wheel ships this repository's deployment"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # This environment's packages less its editable install of this checkout (a
    # path entry: the .pth files in it, the editable finder among them, do not run).
    Path(target, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)],
        check=True,
    )
    return venv


async def test_the_installed_console_script_runs_the_projects_own_functions(
    installed: Path, shared_server: RedisServer, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "functions").mkdir(parents=True)
    (project / "functions" / "__init__.py").write_text(textwrap.dedent(USER_FUNCTIONS))
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
