"""`helpline bench --year`: the simulated 2024 year (the published counts, scale 1) end to
end, once with the simulator answering at once and once at its default latency.

Each run is `helpline simulate`'s (`run_year`) on a fresh stack of its own: the year's
reports published onto `helpline.reports.submitted`, timed from the first publish until
metrics has counted every case and every URL's final outcome. The two durations are printed
side by side; nothing passes or fails on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from helpline_cli.simulate import year_on_fresh_stack
from helpline_cli.year import Year, generate
from helpline_shared.settings import Settings

YEAR, SEED = 2024, 1


@dataclass(frozen=True)
class YearTiming:
    latency: str  # how the simulator's latency was set, as printed
    latency_ms: float
    seconds: float  # first report published to the last outcome counted
    cases: int
    urls: int

    @property
    def reports_per_s(self) -> float:
        return self.cases / self.seconds if self.seconds > 0 else 0.0


async def time_year(settings: Settings, year: Year, latency_ms: float | None) -> YearTiming:
    """The year on a fresh stack; `latency_ms` None leaves the simulator at its default."""
    result, stack = await year_on_fresh_stack(settings, year, latency_ms, "year")
    effective = stack.settings.simulator_latency_ms if latency_ms is None else latency_ms
    label = "default" if latency_ms is None else "zero" if latency_ms == 0 else "set"
    return YearTiming(label, effective, result.seconds, year.truth.cases, year.truth.urls)


def year_table(timings: list[YearTiming]) -> Table:
    t = Table(title=f"the simulated {YEAR} year end to end (publish → last outcome counted)")
    for col in ("simulator latency", "seconds", "reports/s", "URLs/s"):
        t.add_column(col, justify="right")
    for y in timings:
        t.add_row(
            f"{y.latency} ({y.latency_ms:g} ms)",
            f"{y.seconds:.1f}",
            f"{y.reports_per_s:,.0f}",
            f"{y.urls / y.seconds if y.seconds > 0 else 0.0:,.0f}",
        )
    return t


async def run_year_bench(
    settings: Settings, latencies: tuple[float | None, ...] = (0, None)
) -> int:
    """`helpline bench --year`: each latency on a fresh stack, then the table."""
    console = Console(width=max(140, Console().width))  # tables whole in a log file too
    year = generate(YEAR, SEED)
    timings = []
    for latency_ms in latencies:
        what = "its default" if latency_ms is None else f"{latency_ms:g} ms"
        console.print(
            f"helpline bench --year: {year.truth.cases:,} cases, {year.truth.urls:,} URLs of "
            f"{YEAR}, simulator latency {what}; starting a fresh stack"
        )
        timings.append(await time_year(settings, year, latency_ms))
    console.print(year_table(timings))
    if len(timings) == 2 and timings[0].seconds > 0:
        console.print(
            f"{timings[1].latency} latency / zero latency: "
            f"{timings[1].seconds / timings[0].seconds:.2f}x the time"
        )
    return 0
