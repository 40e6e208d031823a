"""`helpline bench --rate R --duration S` and `helpline bench --max-rate`.

Each rate runs on a fresh stack (its own database, broker and processes), warmed with a few
reports first, so that one rate's backlog never delays the next. The figures are printed in
a table; `--max-rate` steps the rate up until the p99 reaches one second, then halves the
step between the last rate that held and the first that did not.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from helpline_cli.bench.machine import CpuMeter
from helpline_cli.bench.offered import OfferedRun, offered_load, stage_medians
from helpline_cli.bench.profile import Hot, Profiler
from helpline_cli.bench.run import bench_stack
from helpline_shared.settings import Settings

P99_LIMIT_MS = 1000.0


@dataclass
class RateResult:
    run: OfferedRun
    cpu_cores: float  # CPU-seconds of every process of the stack per wall second
    cpu_by_process: dict[str, float]  # by process (group); "bench ..." ones are not the stack
    hottest: dict[str, list[Hot]]  # by service, when profiled


async def measure_rate(  # noqa: PLR0917
    settings: Settings,
    rate: float,
    duration_s: float,
    urls_per_report: int,
    progress: Progress,
    profile_dir: Path | None = None,
) -> RateResult:
    """One rate on a fresh stack; with `profile_dir`, py-spy samples every service while
    the reports are published."""
    stack = await bench_stack(settings, f"rate-{uuid.uuid4().hex[:8]}")
    try:
        await stack.start_services()
        await offered_load(
            stack.settings, rate=min(rate, 50), duration_s=1, urls_per_report=urls_per_report
        )
        meter = CpuMeter(stack)
        meter.start()
        profiler = None
        if profile_dir is not None:
            profiler = Profiler(stack, profile_dir / f"{rate:g}", duration_s)
            profiler.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        run = await offered_load(
            stack.settings,
            rate=rate,
            duration_s=duration_s,
            urls_per_report=urls_per_report,
            progress=progress,
        )
        wall = loop.time() - started
        used = meter.read()
        hot = await asyncio.to_thread(profiler.finish) if profiler is not None else {}
    finally:
        await asyncio.to_thread(stack.stop)
    by = {k: v / wall for k, v in used.items()}
    return RateResult(run, sum(v for k, v in by.items() if not k.startswith("bench")), by, hot)


def _ms(v: float) -> str:
    return "never" if math.isinf(v) else f"{v:,.0f}"


def latency_table(results: list[RateResult]) -> Table:
    t = Table(title="publish → last outcome, open loop (ms; second half in brackets)")
    for col in ("offered/s", "achieved/s", "done/s", "p50", "p95", "p99", "max", "unfinished"):
        t.add_column(col, justify="right")
    t.add_column("stack CPU (cores)", justify="right")
    for r in results:
        o = r.run
        t.add_row(
            f"{o.rate:g}",
            f"{o.achieved_rate:,.0f}",
            f"{o.completed_rate:,.0f}",
            *(f"{_ms(o.p(q))} ({_ms(o.p(q, True))})" for q in (50, 95, 99, 100)),
            str(o.unfinished),
            f"{r.cpu_cores:.2f}",
        )
    return t


def stage_table(result: RateResult) -> Table:
    t = Table(
        title=f"where the time goes at {result.run.rate:g} reports/s (ms after the stage before)"
    )
    t.add_column("stage")
    t.add_column("median", justify="right")
    t.add_column("p99", justify="right")
    for label, (med, p99) in stage_medians(result.run).items():
        t.add_row(label, f"{med:,.1f}", f"{p99:,.1f}")
    return t


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def profile_table(result: RateResult) -> Table:
    t = Table(title=f"busiest functions at {result.run.rate:g} reports/s (py-spy, busy samples)")
    for col in ("service", "function", "self", "total"):
        t.add_column(col, justify="right" if col in ("self", "total") else "left")
    for service, hot in result.hottest.items():
        for h in hot[:5]:
            t.add_row(service, h.frame[:90], f"{h.self_share:.1%}", f"{h.total_share:.1%}")
    return t


async def run_rates(
    settings: Settings,
    rates: list[float],
    duration_s: float,
    urls_per_report: int,
    profile_dir: Path | None = None,
) -> int:
    console = Console(width=max(140, Console().width))  # tables whole in a log file too
    results = []
    with _progress(console) as progress:
        for rate in rates:
            result = await measure_rate(
                settings, rate, duration_s, urls_per_report, progress, profile_dir
            )
            results.append(result)
            progress.console.print(latency_table([result]))  # each rate as soon as it ends
    console.print(latency_table(results))
    for r in results:
        console.print(stage_table(r))
        busiest = sorted(r.cpu_by_process.items(), key=lambda kv: -kv[1])
        console.print(
            f"CPU at {r.run.rate:g}/s (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in busiest)
        )
        if r.hottest:
            console.print(profile_table(r))
    if profile_dir is not None:
        console.print(f"collapsed stacks (flame-graph input) in {profile_dir}/<rate>/<service>.txt")
    return 0


async def run_max_rate(
    settings: Settings, duration_s: float, urls_per_report: int, start: float = 200.0
) -> int:
    """Steps up by half again while the p99 holds under a second; then bisects."""
    console = Console(width=max(140, Console().width))  # tables whole in a log file too
    results: list[RateResult] = []
    held, failed = 0.0, math.inf
    rate = start
    with _progress(console) as progress:
        while failed - held > max(25.0, held * 0.05):
            r = await measure_rate(settings, rate, duration_s, urls_per_report, progress)
            results.append(r)
            progress.console.print(latency_table([r]))
            if r.run.p(99) < P99_LIMIT_MS and r.run.unfinished == 0:
                held = rate
            else:
                failed = rate
            rate = rate * 1.5 if math.isinf(failed) else (held + failed) / 2
            rate = round(rate / 5) * 5
    results.sort(key=lambda r: r.run.rate)
    console.print(latency_table(results))
    console.print(
        f"highest rate with p99 under {P99_LIMIT_MS:.0f} ms: [bold]{held:g} reports/s[/bold]"
        + (f" (first to miss: {failed:g})" if not math.isinf(failed) else "")
    )
    return 0
