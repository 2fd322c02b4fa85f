"""Print what the replay properties checked (programs, boundaries, signal plans)."""

from __future__ import annotations

import pytest

from .programs import PLANS, STATS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS:
        return
    figures = ", ".join(f"{value} {name}" for name, value in sorted(STATS.items()))
    terminalreporter.write_line(
        f"replay properties checked: {figures}, {len(PLANS)} distinct signal plans"
    )
