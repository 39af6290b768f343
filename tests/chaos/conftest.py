"""The fault battery's figures: printed per scenario and gathered at the end of the run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos.ledger import Figures

FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Callable[..., None]:
    """Report a scenario's figures, and any of its own (`extra`, key=value): on
    stdout (pytest -s), in the JUnit report, and in the run's summary."""

    def report(figures: Figures, **extra: object) -> None:
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
