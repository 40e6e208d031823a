"""Progress on a terminal for long runs, and each scenario's summary.

Pytest captures output, so progress goes straight to the terminal (the original stderr) and
only when it is one; the summaries are also collected for pytest's terminal summary.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

SUMMARIES: list[Summary] = []


def _console() -> Console | None:
    stream = sys.__stderr__
    if stream is None or not stream.isatty():
        return None
    return Console(file=stream)


class Progress:
    """A progress bar per task on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self._console = _console()
        self._bars: RichProgress | None = None
        self._open = 0

    def task(self, description: str, total: int) -> TaskID | None:
        if self._console is None:
            return None
        if self._bars is None:
            self._bars = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._bars.start()
        self._open += 1
        return self._bars.add_task(description, total=total)

    def advance(self, task: TaskID | None, n: int = 1) -> None:
        if self._bars is not None and task is not None:
            self._bars.advance(task, n)

    def update(self, task: TaskID | None, completed: int, description: str | None = None) -> None:
        if self._bars is not None and task is not None:
            kwargs: dict[str, Any] = {"completed": completed}
            if description is not None:
                kwargs["description"] = description
            self._bars.update(task, **kwargs)

    def done(self, task: TaskID | None) -> None:
        if self._bars is None or task is None:
            return
        self._bars.remove_task(task)
        self._open -= 1
        if self._open == 0:
            self._bars.stop()
            self._bars = None

    def log(self, line: str) -> None:
        if self._console is not None:
            self._console.print(line, markup=False, highlight=False)


@dataclass
class Check:
    name: str
    ok: bool
    evidence: str = ""


@dataclass
class Summary:
    scenario: str
    reports: int
    malformed: int
    duration_s: float
    faults: list[str]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        passed = sum(c.ok for c in self.checks)
        out = [
            f"{self.scenario}: {self.reports} reports, {self.malformed} malformed, "
            f"{self.duration_s:.0f}s, {len(self.faults)} faults, "
            f"checks {passed}/{len(self.checks)} passed"
        ]
        out += [
            f"    {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.evidence}"
            for c in self.checks
            if not c.ok or len(c.evidence) < 160
        ]
        return out

    def show(self) -> None:
        SUMMARIES.append(self)
        console = _console()
        if console is None:
            return
        table = Table(title=self.lines()[0], show_header=False)
        for c in self.checks:
            table.add_row("[green]ok[/]" if c.ok else "[red]FAIL[/]", c.name, c.evidence[:200])
        console.print(table)
