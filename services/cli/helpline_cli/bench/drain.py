"""`helpline bench --backlog N`: a backlog on the intake topic drained by services that were
stopped while it filled, with each service's memory.

On a fresh stack the services start once and idle for a moment: each one's RSS then is its
baseline. They are stopped (gracefully, so their consumers leave the group), `N` reports are
published onto `helpline.reports.submitted`, and they start again to find the whole backlog
waiting. Every service process's RSS is sampled every 0.2 s until every URL of the backlog
has its final outcome in the escalator's table and metrics has counted every case. The drain
rate runs from intake's receipt of the first report to the last URL's decision, both as
recorded in the database. It prints figures; it passes or fails nothing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from helpline_cli.bench.backlog import RssSampler
from helpline_cli.bench.machine import rss_mb
from helpline_cli.bench.run import bench_stack
from helpline_cli.bench.workload import make_reports
from helpline_cli.stack import Stack
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_SUBMITTED

FINAL = ["decided", "failed", "needs_manual"]
LIMIT_MB = 200.0  # the aim of issue 12, printed beside each peak
IDLE_S = 2.0  # how long the services idle before their baseline RSS is read

_COUNTS = """
SELECT (SELECT count(*) FROM intake.reports WHERE report_id LIKE $1) AS received,
       (SELECT count(*) FROM escalator.escalations WHERE state = ANY($2)) AS final,
       (SELECT count(*) FROM metrics.cases) AS counted
"""

_SPAN = """
SELECT extract(epoch FROM min(i.received_at)) AS first_received,
       extract(epoch FROM max(i.received_at)) AS last_received,
       (SELECT extract(epoch FROM max(decided_at)) FROM escalator.escalations) AS last_decided
FROM intake.reports i WHERE i.report_id LIKE $1
"""


@dataclass(frozen=True)
class Drain:
    """One backlog's figures. RSS in MiB by process name; times in seconds."""

    reports: int
    urls: int
    publish_s: float  # publishing the backlog, services stopped
    baseline_mb: dict[str, float]  # idle after the first start, before the backlog
    peak_mb: dict[str, float]  # highest sample from the second start to the end
    intake_s: float  # intake's first receipt to its last
    drain_s: float  # intake's first receipt to the last URL's decision
    total_s: float  # the second start to the last URL's final outcome seen

    @property
    def reports_per_s(self) -> float:
        return self.reports / self.drain_s if self.drain_s > 0 else 0.0

    @property
    def urls_per_s(self) -> float:
        return self.urls / self.drain_s if self.drain_s > 0 else 0.0


async def publish_backlog(
    settings: Settings, payloads: list[bytes], progress: Progress | None = None
) -> float:
    """Publish `payloads` onto the intake topic as fast as the producer allows, each keyed
    by its index; returns the seconds until the broker acknowledged the last."""
    producer = AIOKafkaProducer(**client_kwargs(settings, "bench-backlog"), acks="all", linger_ms=5)
    await producer.start()
    task = (
        progress.add_task("backlog published (services stopped)", total=len(payloads))
        if progress is not None
        else None
    )
    started = time.monotonic()
    try:
        pending: list[asyncio.Future[object]] = []
        for i, p in enumerate(payloads):
            pending.append(await producer.send(REPORTS_SUBMITTED.name, p, key=str(i).encode()))
            if len(pending) >= 2000:  # bound what waits in memory; shows progress
                await asyncio.gather(*pending)
                pending.clear()
                if progress is not None and task is not None:
                    progress.update(task, completed=i + 1)
        await asyncio.gather(*pending)
        if progress is not None and task is not None:
            progress.update(task, completed=len(payloads))
    finally:
        await producer.stop()
    return time.monotonic() - started


def _stop_services(stack: Stack) -> None:
    """SIGTERM to every service at once, then wait for each; broker and database stay."""
    for proc in stack.procs.values():
        proc.send_signal(signal.SIGTERM)
    for name in list(stack.procs):
        stack.stop_service(name)


def _rss_now(stack: Stack) -> dict[str, float]:
    return {name: rss_mb(p.pid) for name, p in stack.procs.items()}


async def drain_backlog(
    stack: Stack,
    n: int,
    urls_per_report: int,
    progress: Progress | None = None,
    timeout_s: float = 3600.0,
) -> Drain:
    """On a prepared stack whose services are not running and whose database holds
    nothing else: baseline, stop, backlog, start, drain (see the module docstring)."""
    run = f"backlog-{uuid.uuid4().hex[:8]}"
    payloads = make_reports(n, urls_per_report, run)
    urls = len({u for p in payloads for u in json.loads(p)["urls"]})

    await stack.start_services()
    await asyncio.sleep(IDLE_S)
    baseline = _rss_now(stack)
    names = list(stack.procs)
    await asyncio.to_thread(_stop_services, stack)
    publish_s = await publish_backlog(stack.settings, payloads, progress)

    db = await asyncpg.connect(stack.settings.database_url)
    samplers: dict[str, RssSampler] = {}
    try:
        started = time.monotonic()
        for name in names:
            stack.restart_service(name)
            samplers[name] = RssSampler(stack.procs[name].pid)
            samplers[name].start()
        tasks: dict[str, TaskID] = {}
        if progress is not None:
            tasks = {
                "received": progress.add_task("reports received by intake", total=n),
                "final": progress.add_task("URLs with their final outcome", total=urls),
                "counted": progress.add_task("cases counted by metrics", total=n),
            }
        await stack.wait_ready(tuple(names))
        finished_at: float | None = None
        while True:
            row = await db.fetchrow(_COUNTS, f"{run}-%", FINAL)
            assert row is not None
            for key, task in tasks.items():
                assert progress is not None
                progress.update(task, completed=row[key])
            if finished_at is None and row["final"] >= urls:
                finished_at = time.monotonic()
            if finished_at is not None and row["counted"] >= n:
                break
            if dead := stack.dead():
                raise RuntimeError(f"{', '.join(dead)} stopped; see {stack.log_dir}")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"the backlog did not drain in {timeout_s:.0f} s")
            await asyncio.sleep(0.5)
        span = await db.fetchrow(_SPAN, f"{run}-%")
        assert span is not None
    finally:
        for s in samplers.values():
            s.stop()
        await db.close()
    first = float(span["first_received"])
    return Drain(
        reports=n,
        urls=urls,
        publish_s=publish_s,
        baseline_mb=baseline,
        peak_mb={name: s.peak("start") for name, s in samplers.items()},
        intake_s=float(span["last_received"]) - first,
        drain_s=float(span["last_decided"]) - first,
        total_s=finished_at - started,
    )


def drain_table(d: Drain) -> Table:
    t = Table(title=f"RSS per service (MiB): idle baseline, peak while {d.reports:,} drained")
    t.add_column("service")
    for col in ("baseline", "peak", "peak - baseline", f"under {LIMIT_MB:.0f}"):
        t.add_column(col, justify="right")
    for name in sorted(d.peak_mb, key=lambda k: -d.peak_mb[k]):
        base, peak = d.baseline_mb.get(name, float("nan")), d.peak_mb[name]
        t.add_row(
            name,
            f"{base:.0f}",
            f"{peak:.0f}",
            f"{peak - base:+.0f}",
            "yes" if peak < LIMIT_MB else "NO",
        )
    return t


def summary(d: Drain) -> list[str]:
    return [
        f"published {d.reports:,} reports ({d.urls:,} URLs) in {d.publish_s:.1f} s "
        f"with the services stopped",
        f"drain rate: {d.reports_per_s:,.0f} reports/s, {d.urls_per_s:,.0f} URLs/s "
        f"(intake's first receipt to the last decision, {d.drain_s:.1f} s)",
        f"intake took {d.intake_s:.1f} s to receive them all",
        f"start to the last final outcome: {d.total_s:.1f} s",
    ]


async def run_backlog(settings: Settings, *, reports: int, urls_per_report: int) -> int:
    """`helpline bench --backlog N`: a fresh stack, the backlog drained, the figures."""
    console = Console(width=max(140, Console().width))  # tables whole in a log file too
    console.print(
        f"helpline bench --backlog: {reports:,} reports, {urls_per_report} URLs each; "
        "starting a fresh stack"
    )
    stack = await bench_stack(settings, f"backlog-{uuid.uuid4().hex[:8]}")
    try:
        with Progress(
            TextColumn("{task.description:<36}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            result = await drain_backlog(stack, reports, urls_per_report, progress)
    finally:
        await asyncio.to_thread(stack.stop)
    console.print(drain_table(result))
    for line in summary(result):
        console.print(line)
    return 0
