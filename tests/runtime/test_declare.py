"""Declaring functions: options checked at declaration, handler types checked by mypy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_type_hints

import msgspec
import pytest

from sluice.runtime import ConfigurationError, Job, function
from sluice.runtime.declare import FunctionOptions, Options
from sluice.runtime.errors import InvalidName
from sluice.runtime.registry import Registry, load
from tests.sample_functions import FUNCTIONS, Task


class Note(msgspec.Struct):
    text: str


def test_a_misspelt_or_bad_option_fails_at_declaration() -> None:
    # mypy refuses the first and third as well (FunctionOptions); at run time too.
    with pytest.raises(ConfigurationError, match="concurency"):
        function("x", input=Note, concurency=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="batch_size must be at least 1"):
        function("x", input=Note, batch_size=0)
    with pytest.raises(ConfigurationError, match="Expected `int`"):
        function("x", input=Note, concurrency="many")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="a third of the visibility timeout"):
        function("x", input=Note, batch_window_ms=5_000, visibility_timeout_s=10)


def test_the_typed_options_are_the_options() -> None:
    typed = get_type_hints(FunctionOptions)
    declared = {f.name: f.type for f in msgspec.structs.fields(Options)}
    assert typed == declared


def test_a_bad_name_fails_at_declaration() -> None:
    async def handler(job: Job[Note]) -> None:
        del job

    with pytest.raises(InvalidName):
        function("Bad Name", input=Note)(handler)


def test_registry_routes_topics_and_refuses_duplicates() -> None:
    registry = Registry(FUNCTIONS)
    assert [f.name for f in registry.route("tasks")] == ["tasks"]
    with pytest.raises(ConfigurationError, match="declared twice"):
        Registry([*FUNCTIONS, FUNCTIONS[0]])


def test_fan_out_routes_one_topic_to_every_subscriber() -> None:
    async def handler(job: Job[Task]) -> None:
        del job

    a = function("audit", input=Task, topics=("task.created",))(handler)
    b = function("notify", input=Task, topics=("task.created",))(handler)
    assert [f.name for f in Registry([a, b]).route("task.created")] == ["audit", "notify"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "module:attr"),
        ("no_such_module:X", "cannot import"),
        ("tests.sample_functions:MISSING", "has no 'MISSING'"),
        ("tests.sample_functions:Task", "sequence of Function"),
    ],
)
def test_load_explains_a_bad_spec(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load(spec)


def test_mypy_rejects_a_handler_whose_input_does_not_match(tmp_path: Path) -> None:
    snippet = tmp_path / "wrong_handler.py"
    snippet.write_text(
        textwrap.dedent(
            """
            import msgspec
            from sluice.runtime import Job, function

            class A(msgspec.Struct):
                x: int

            class B(msgspec.Struct):
                y: str

            @function("wrong", input=A)
            async def handler(job: Job[B]) -> None:
                pass
            """
        )
    )
    root = Path(__file__).resolve().parents[2]
    # A copy of the project's cache (./local.sh runs mypy before the tests): the
    # libraries and sluice.runtime come from it when unchanged (about 2 s, not 20);
    # mypy checks each cached module against its source and options, and the
    # project's own cache never gets this snippet. Without one, mypy starts cold.
    cache = tmp_path / "mypy-cache"
    if (root / ".mypy_cache").is_dir():
        shutil.copytree(root / ".mypy_cache", cache)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(snippet)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert result.returncode == 1
    assert 'Argument 1 has incompatible type "Callable[[Job[B]]' in result.stdout
