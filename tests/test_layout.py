"""House rules that code review forgets: import direction, runtime's roles, documented settings."""

from __future__ import annotations

import ast
from pathlib import Path

import sluice.runtime
from sluice.runtime.settings import PLATFORM_PORT, REDIS_PARTS, VARIABLES

ROOT = Path(__file__).resolve().parent.parent
# functions -> runtime -> streams: a package may import only those to its right.
ALLOWED = {"functions": {"runtime"}, "runtime": {"streams"}, "streams": set[str]()}


def package_of(module: str) -> str:
    """The folder a module lives in: `sluice.runtime.x` is runtime/ (sluice/ links
    to the folders), `functions.x` is functions/."""
    parts = module.split(".")
    return parts[1] if parts[0] == "sluice" and len(parts) > 1 else parts[0]


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(package_of(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(package_of(node.module))
    return names


def test_the_library_is_imported_under_its_namespace() -> None:
    """`import runtime` would load a second copy of every module beside
    `sluice.runtime`'s (and, installed, finds a user's own package)."""
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("functions", "runtime", "streams", "tests", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for name in bare_imports(path)
    ]
    assert wrong == []


def bare_imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [name for name in found if name.split(".")[0] in {"runtime", "streams"}]


def test_imports_point_one_way() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in (ROOT / package).rglob("*.py"):
            for name in imported_packages(path) & set(ALLOWED):
                if name != package and name not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_functions_import_only_the_public_runtime_api() -> None:
    wrong = []
    for path in (ROOT / "functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wrong += [a.name for a in node.names if a.name.startswith("sluice.runtime.")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "sluice.runtime"
            ):
                if node.module != "sluice.runtime":
                    wrong.append(node.module or "")
                wrong += [
                    f"sluice.runtime.{a.name}"
                    for a in node.names
                    if a.name not in sluice.runtime.__all__
                ]
    assert wrong == []


def test_imports_are_absolute() -> None:
    """The rules here read absolute imports only."""
    relative = [
        str(path.relative_to(ROOT))
        for package in ALLOWED
        for path in (ROOT / package).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert relative == []


# runtime/ by role: a module's role is its folder; the base (declare, errors,
# registry, settings, ...) is at the top. "api" is runtime/__init__.py, the public
# names, which gathers the client role. The worker, scheduler and telemetry never
# import the client API or the ingress; the base imports no role. A new folder
# under runtime/ needs its line here.
# `testing` (the helpers for users' tests) runs workers and calls handlers, and no
# process imports it.
ROLES = {"worker", "scheduler", "client", "telemetry", "ingress", "testing"}
NEVER = {
    "base": ROLES | {"api"},
    "telemetry": {"worker", "scheduler", "client", "ingress", "testing", "api"},
    "worker": {"scheduler", "client", "ingress", "testing", "api"},
    "scheduler": {"worker", "client", "ingress", "testing", "api"},
    "client": {"worker", "ingress", "testing", "api"},
    "ingress": {"worker", "scheduler", "testing", "api"},
    "testing": {"ingress", "api"},
}
# The process shell and the public API gather the roles.
GATHERERS = {"__init__.py", "cli.py"}


def role_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["sluice", "runtime"]:
        return None
    parts = parts[1:]
    if len(parts) == 1:
        return "api"
    return parts[1] if parts[1] in ROLES else "base"


def runtime_imports(path: Path, package: Path) -> list[str]:
    """The runtime modules `path` imports; `from sluice.runtime import x` names module x when
    there is one, else the public API."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "sluice.runtime":
            for alias in node.names:
                module = package / alias.name
                exists = module.is_dir() or module.with_suffix(".py").exists()
                found.append(f"sluice.runtime.{alias.name}" if exists else "sluice.runtime")
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return [module for module in found if role_of(module) is not None]


def role_crossings(root: Path) -> list[str]:
    package = root / "runtime"
    wrong = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package)
        if where.as_posix() in GATHERERS:
            continue
        role = where.parts[0] if len(where.parts) > 1 else "base"
        for module in runtime_imports(path, package):
            if role_of(module) in NEVER[role]:
                wrong.append(f"runtime/{where.as_posix()} ({role}) imports {module}")
    return wrong


def test_runtime_roles_import_what_their_role_may() -> None:
    assert role_crossings(ROOT) == []


def test_the_role_rules_catch_a_crossing(tmp_path: Path) -> None:
    files = {
        "worker/loop.py": "from sluice.runtime.client.jobs import Jobs\n",
        "scheduler/host.py": "import sluice.runtime.ingress.app\n",
        "telemetry/tracing.py": "from sluice.runtime import Jobs\n",
        "health.py": "from sluice.runtime.worker import loop\n",
        "worker/intake.py": (
            "from sluice.runtime import declare\nfrom sluice.runtime.telemetry import logs\n"
        ),
        "client/repeats.py": "from sluice.runtime.scheduler.cron import Cron\n",
        "declare.py": "",
    }
    for name, text in files.items():
        (tmp_path / "runtime" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "runtime" / name).write_text(text)
    assert role_crossings(tmp_path) == [
        "runtime/health.py (base) imports sluice.runtime.worker",
        "runtime/scheduler/host.py (scheduler) imports sluice.runtime.ingress.app",
        "runtime/telemetry/tracing.py (telemetry) imports sluice.runtime",
        "runtime/worker/loop.py (worker) imports sluice.runtime.client.jobs",
    ]


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    names = [*VARIABLES, *REDIS_PARTS, PLATFORM_PORT]
    assert [name for name in names if f"`{name}`" not in readme] == []
