"""Each Lua script's header says what it is called with; held here against its
Python caller, read from the source: the libraries it starts with (`-- uses:`
against `Script.beside(..., uses=[...])`), its KEYS (`KEYS[n] <PartitionKeys
attribute>` against the `keys.<attribute>` list the caller passes) and the fixed
ARGV it documents (no more than the caller's argument list passes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sluice.streams.keys import PartitionKeys
from sluice.streams.lua import LIB

STREAMS = Path(__file__).resolve().parents[2] / "streams"


def header(path: Path) -> str:
    """The comment lines a script opens with."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:])
    return "\n".join(lines)


def uses_of(path: Path) -> list[str]:
    found = re.search(r"^ uses: (.*)$", header(path), re.MULTILINE)
    return found[1].split() if found else []


class Caller:
    """A script as its module loads and calls it."""

    def __init__(self, module: Path, name: str, uses: list[str]) -> None:
        self.module, self.name, self.uses = module, name, uses
        # Per call: the PartitionKeys attributes passed as KEYS, and the number of
        # arguments when they are a list written out (None: built elsewhere).
        self.calls: list[tuple[list[str], int | None]] = []


def callers() -> dict[str, Caller]:
    found: dict[str, Caller] = {}
    for module in sorted(STREAMS.glob("*.py")):
        tree = ast.parse(module.read_text())
        by_variable: dict[str, Caller] = {}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func) == "Script.beside"
            ):
                name = ast.literal_eval(node.value.args[1])
                uses: list[str] = next(
                    (ast.literal_eval(k.value) for k in node.value.keywords if k.arg == "uses"), []
                )
                caller = Caller(module, name, uses)
                found[name] = caller
                by_variable[ast.unparse(node.targets[0])] = caller
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in by_variable:
                keys_arg, args_arg = node.args[1], node.args[2]
                assert isinstance(keys_arg, ast.List), f"{module.name}: KEYS not a list literal"
                # `keys.<attribute>`, or a key outside the partitions by its builder's
                # name (`global_limit(function)`).
                keys = [
                    ast.unparse(k).removeprefix("keys.").partition("(")[0] for k in keys_arg.elts
                ]
                count = None
                if isinstance(args_arg, ast.List) and not any(
                    isinstance(a, ast.Starred) for a in args_arg.elts
                ):
                    count = len(args_arg.elts)
                by_variable[ast.unparse(node.func)].calls.append((keys, count))
    return found


# Keys outside the function partitions that a script is passed (streams.keys).
OUTSIDE = {"global_limit"}

CALLERS = callers()
SCRIPTS = sorted(p.name for p in STREAMS.glob("*.lua"))


def test_every_entry_script_has_one_caller_and_libraries_live_apart() -> None:
    assert sorted(CALLERS) == SCRIPTS
    libraries = {p.stem for p in (STREAMS / LIB).glob("*.lua")}
    for caller in CALLERS.values():
        assert set(caller.uses) <= libraries, caller.name


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_header_names_the_libraries_the_caller_loads(name: str) -> None:
    assert uses_of(STREAMS / name) == CALLERS[name].uses


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_library_comes_after_the_libraries_it_uses(name: str) -> None:
    loaded: list[str] = []
    for library in CALLERS[name].uses:
        assert set(uses_of(STREAMS / LIB / f"{library}.lua")) <= set(loaded), library
        loaded.append(library)


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_header_documents_the_keys_and_arguments_the_caller_passes(name: str) -> None:
    text = header(STREAMS / name)
    documented = re.findall(r"KEYS\[(\d+)\] ([a-z_]+)", text)
    assert [int(n) for n, _ in documented] == list(range(1, len(documented) + 1)), name
    names = [key for _, key in documented]
    assert set(names) <= set(PartitionKeys.__slots__) | OUTSIDE, names
    # Single documented arguments, not ranges ("ARGV[6..12]": optional ones).
    argv = [int(n) for n in re.findall(r"ARGV\[(\d+)\](?!\.)", text)]
    calls = CALLERS[name].calls
    assert calls, f"{name} is never called"
    for keys, count in calls:
        assert keys == names, name
        if count is not None:
            assert count >= max(argv, default=0), name
