"""The fault suite's size and its end-of-run summary.

The size is `--fault-reports N` (when tests/faults is given on the command line) or
`HELPLINE_FAULT_REPORTS`; the default keeps `make test` within its budget, and
`make test-faults` runs 10,000 reports per scenario.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.faults.progress import SUMMARIES

LOG_DIRS: list[Path] = []

DEFAULT_REPORTS = 300


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-reports",
        type=int,
        default=None,
        help=f"reports per fault scenario (default: $HELPLINE_FAULT_REPORTS or {DEFAULT_REPORTS})",
    )


@pytest.fixture(scope="session")
def fault_reports(request: pytest.FixtureRequest) -> int:
    try:
        option = request.config.getoption("--fault-reports")
    except ValueError:  # conftest not loaded at start-up: no such option
        option = None
    return int(option or os.environ.get("HELPLINE_FAULT_REPORTS") or DEFAULT_REPORTS)


@pytest.fixture(scope="session")
def fault_dir() -> Path:
    """Logs and data of every run, kept after the session (pytest's own temporary
    directories are rotated away by concurrent sessions); printed in the summary."""
    path = Path(tempfile.mkdtemp(prefix="helpline-faults-"))
    LOG_DIRS.append(path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARIES:
        return
    terminalreporter.section("fault scenarios")
    for summary in SUMMARIES:
        for line in summary.lines():
            terminalreporter.write_line(line)
    for path in LOG_DIRS:
        terminalreporter.write_line(f"logs: {path}")
