"""What the machine did during a run: CPU seconds, RSS, when each stage finished."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from helpline_cli.stack import Stack


def _pid_cpu_s(pid: int, tick: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / tick


class CpuMeter:
    """CPU seconds (user + system) each named group of a stack's processes uses between
    `start` and `read`. Counted per process: a process that starts meanwhile (a new
    database backend) counts from zero, one that exits meanwhile drops out; nothing is
    ever negative."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._tick = os.sysconf("SC_CLK_TCK")
        self._start: dict[int, float] = {}

    def _now(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, pids in process_groups(self._stack).items():
            used = {pid: _pid_cpu_s(pid, self._tick) for pid in pids}
            out[name] = {pid: s for pid, s in used.items() if s is not None}
        return out

    def start(self) -> None:
        self._start = {pid: s for group in self._now().values() for pid, s in group.items()}

    def read(self) -> dict[str, float]:
        return {
            name: sum(max(0.0, s - self._start.get(pid, 0.0)) for pid, s in group.items())
            for name, group in self._now().items()
        }


def process_groups(stack: Stack) -> dict[str, list[int]]:
    groups = {name: [p.pid] for name, p in stack.procs.items()}
    groups["bench (clients, raw relay)"] = [os.getpid()]
    for name, proc in stack.aux.items():  # beside the system, never counted as it
        groups[f"bench ({name})"] = [proc.pid]
    if stack.broker_proc is not None:
        groups["broker"] = [stack.broker_proc.pid]
    groups["postgres"] = _postgres_pids(stack.settings.data_dir / "postgres")
    return groups


def _postgres_pids(data_dir: Path) -> list[int]:
    """The embedded server's postmaster and its children (not another server's, such as
    one that tests run against on the same machine); every postgres process when the
    database is not the embedded one."""
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        postmaster = None
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or _comm(d) != "postgres":
            continue
        if postmaster is None or int(d.name) == postmaster or _ppid(d) == postmaster:
            pids.append(int(d.name))
    return pids


def _ppid(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _comm(proc_dir: Path) -> str:
    try:
        return (proc_dir / "comm").read_text().strip()
    except OSError:
        return ""


async def stage_times(database_url: str, run: str) -> dict[str, float]:
    """When each stage finished the run, in seconds after intake received the first report."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT min(i.received_at) AS t0,
                   max(i.received_at) AS intake,
                   max(e.created_at) AS escalator_inserted,
                   max(e.decided_at) AS decided
            FROM intake.reports i JOIN escalator.escalations e USING (case_id)
            WHERE i.report_id LIKE $1
            """,
            f"{run}-%",
        )
    finally:
        await conn.close()
    assert row is not None
    t0 = row["t0"]
    return {
        "intake stored the last report": (row["intake"] - t0).total_seconds(),
        "escalator recorded the last URL": (row["escalator_inserted"] - t0).total_seconds(),
        "the last decision was recorded": (row["decided"] - t0).total_seconds(),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
