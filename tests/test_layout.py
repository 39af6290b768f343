"""House rules that code review forgets: import direction, documented settings."""

from __future__ import annotations

import ast
from pathlib import Path

from runtime.settings import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
# functions -> runtime -> streams: a package may import only those to its right.
ALLOWED = {"functions": {"runtime"}, "runtime": {"streams"}, "streams": set[str]()}


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_point_one_way() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in (ROOT / package).rglob("*.py"):
            for name in imported_packages(path) & set(ALLOWED):
                if name != package and name not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_functions_import_only_the_public_runtime_api() -> None:
    for path in (ROOT / "functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("runtime")
            ):
                assert node.module == "runtime", f"{path.name} imports {node.module}"


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [name for name in VARIABLES if f"`{name}`" not in readme] == []
