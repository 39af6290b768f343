"""Sluice built into a wheel and installed into a fresh virtualenv, offline: for the
install test and for the image's install steps (tests/test_infra.py)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path


def install_wheel(source: Path, folder: Path) -> Path:
    """Build `source`'s wheel and install it into a new virtualenv under `folder`;
    its dependencies are this environment's (a path entry, so no download and
    none of this checkout's own packages). Returns the virtualenv."""
    wheels, venv = folder / "wheels", folder / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        cwd=folder,
    )
    (wheel,) = wheels.glob("sluice-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    # Not this repository's deployment (functions), and no top-level name a
    # project could also use (runtime, streams).
    assert {top for top in tops if not top.endswith(".dist-info")} == {"sluice"}
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
