"""The fault battery's figures: printed per scenario and gathered at the end of the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import pytest

FIGURES = pytest.StashKey[list[str]]()


class Reported(Protocol):
    """A scenario's figures: the ledger's (tests.chaos.ledger.Figures), or the
    security scenarios' own counts."""

    def line(self) -> str:
        """One `key=value` line."""
        ...


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Callable[..., None]:
    """Report a scenario's figures, and any of its own (`extra`, key=value): on
    stdout (pytest -s), in the JUnit report, and in the run's summary."""

    def report(figures: Reported, **extra: object) -> None:
        line = " ".join([figures.line(), *(f"{k}={v}" for k, v in extra.items())])
        print(line)
        record_property("figures", line)
        request.config.stash.setdefault(FIGURES, []).append(line)

    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("fault battery figures")
        for line in lines:
            terminalreporter.write_line(line)
