"""`helpline bench --rate R --profile DIR`: each service sampled by py-spy during the run.

py-spy (from PyPI, in the dev extras) attaches to every service process for the measured
run, samples its Python stacks (`--nonblocking`, so the service never pauses), and writes
one collapsed-stack file per service into DIR (readable by flame-graph tools). The summary
printed is each service's busiest functions: the share of its samples spent in a function
itself ("self") and with what it calls ("total"), among the samples in which it was busy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from helpline_cli.stack import Stack


@dataclass(frozen=True)
class Hot:
    frame: str
    self_share: float
    total_share: float


class Profiler:
    """py-spy on every service process of `stack` for `seconds`."""

    def __init__(self, stack: Stack, directory: Path, seconds: float, rate_hz: int = 50) -> None:
        self._stack = stack
        self._dir = directory
        self._seconds = seconds
        self._rate = rate_hz
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @staticmethod
    def available() -> str | None:
        """The py-spy executable (beside this Python's, as in a venv run without
        activating it, else on PATH), or None when it is not installed."""
        beside = Path(sys.executable).parent / "py-spy"
        return str(beside) if beside.exists() else shutil.which("py-spy")

    def start(self) -> None:
        exe = self.available()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy, or the dev extras)")
        self._dir.mkdir(parents=True, exist_ok=True)
        for name, proc in self._stack.procs.items():
            self._procs[name] = subprocess.Popen(  # noqa: S603
                [
                    exe,
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--duration",
                    str(max(1, round(self._seconds))),
                    "--rate",
                    str(self._rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(self._dir / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def finish(self, timeout_s: float = 60.0) -> dict[str, list[Hot]]:
        """Wait for every py-spy to write its file; each service's busiest functions."""
        out: dict[str, list[Hot]] = {}
        for name, proc in self._procs.items():
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            path = self._dir / f"{name}.txt"
            if path.exists():
                out[name] = hottest(path)
        return out


def hottest(collapsed: Path, top: int = 8) -> list[Hot]:
    """The functions with the most samples of their own, from a collapsed-stack file
    (`frame;frame;... count` per line), with their share of self and total samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    if not samples:
        return []
    return [Hot(f, n / samples, total[f] / samples) for f, n in own.most_common(top)]
