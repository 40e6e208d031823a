"""`helpline simulate`: a generated year through the whole pipeline, its report beside the
generator's ground truth.

A stack starts as `helpline bench` starts one (broker, database, the simulator and the four
services as processes), with `HELPLINE_ALLOW_SIMULATED_REPORTS=true` so intake accepts the
`simulated:` source. The year's reports are published onto `helpline.reports.submitted`;
the run waits until metrics has counted every case and a final outcome for every URL, then
reads the annual report from metrics (`GET /v1/report?year=...&format=json`), the figures
people read, and prints them one a line beside what the generator made.

The production clock is not faked: intake receives every report now. The simulated
reports' `submitted_at` (in the simulated year) only places those cases in a period.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from helpline_cli.bench.run import bench_stack
from helpline_cli.bench.workload import produce
from helpline_cli.stack import Stack
from helpline_cli.year import TAKEDOWN_RATE, Truth, Year, generate
from helpline_shared import apikeys
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_SUBMITTED

FINAL = ["decided", "failed", "needs_manual"]


@dataclass(frozen=True)
class YearRun:
    report: dict[str, Any]  # the metrics service's annual report for the year
    seconds: float  # first report published to the last outcome counted


async def _progress(db: asyncpg.Connection) -> asyncpg.Record:
    row = await db.fetchrow(
        """SELECT (SELECT count(*) FROM metrics.cases) AS cases,
                  (SELECT count(*) FROM metrics.escalations) AS urls,
                  (SELECT count(*) FROM metrics.escalations WHERE state = ANY($1)) AS final,
                  (SELECT coalesce(sum(value), 0) FROM metrics.counters
                   WHERE name = 'reports_rejected_total') AS rejected""",
        FINAL,
    )
    assert row is not None
    return row


async def run_year(
    stack: Stack,
    year: Year,
    *,
    extra: list[bytes] | None = None,
    extra_urls: int = 0,
    timeout_s: float = 1800,
) -> YearRun:
    """Publish the year (and `extra` reports naming `extra_urls` new URLs in all) on a
    running stack whose database holds nothing else; wait, with a progress bar, until
    metrics has every case and every URL's final outcome; return the year's report."""
    payloads = year.reports + list(extra or [])
    cases, urls = len(payloads), year.truth.urls + extra_urls
    db = await asyncpg.connect(stack.settings.database_url)
    try:
        with Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as progress:
            counted = progress.add_task("cases counted by metrics", total=cases)
            final = progress.add_task("URLs with their final outcome", total=urls)
            start = time.monotonic()
            await produce(stack.settings, REPORTS_SUBMITTED.name, payloads)
            while True:
                row = await _progress(db)
                progress.update(counted, completed=row["cases"])
                progress.update(final, completed=row["final"])
                if row["rejected"]:
                    raise RuntimeError(f"intake rejected {row['rejected']} report(s)")
                if row["cases"] >= cases and row["urls"] >= urls and row["final"] >= urls:
                    break
                if dead := stack.dead():
                    raise RuntimeError(f"{', '.join(dead)} stopped; see {stack.log_dir}")
                if time.monotonic() - start > timeout_s:
                    raise TimeoutError(f"the year did not finish in {timeout_s:.0f} s")
                await asyncio.sleep(0.5)
            seconds = time.monotonic() - start
    finally:
        await db.close()
    return YearRun(await fetch_report(stack, year.year), seconds)


async def fetch_report(stack: Stack, year: int) -> dict[str, Any]:
    """The annual report as the metrics service serves it, read with a `read` key made in
    the stack's database for this one request and revoked after it."""
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        key_id, key = await apikeys.create(conn, ["read"], None, "helpline simulate", "simulate")
        try:
            async with httpx.AsyncClient(
                timeout=30, headers={"Authorization": f"Bearer {key}"}
            ) as client:
                r = await client.get(
                    f"{stack.url('metrics')}/v1/report", params={"year": year, "format": "json"}
                )
                r.raise_for_status()
                body: dict[str, Any] = r.json()
                return body
        finally:
            await apikeys.revoke(conn, key_id)
    finally:
        await conn.close()


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def lines(report: dict[str, Any], truth: Truth, seconds: float) -> list[str]:
    """The headline figures, one a line, each beside its ground truth (or published value)."""
    rows: list[tuple[str, str, str]] = [
        ("cases", f"{report['cases']:,}", f"ground truth {truth.cases:,}")
    ]
    for p in report["platforms"]:
        n = truth.cases_by_platform.get(p["platform"], 0)
        rows.append(
            (
                f"cases involving {p['name']}",
                f"{_pct(p['share'])} ({p['cases']:,})",
                f"ground truth {_pct(n / truth.cases)} ({n:,})",
            )
        )
    rows.append(("URLs escalated", f"{report['urls_escalated']:,}", f"ground truth {truth.urls:,}"))
    rows.append(
        ("takedown rate", _pct(report["takedown_rate"]), f"published {_pct(TAKEDOWN_RATE)}")
    )
    for i in report["issue_types"]:
        n = truth.cases_by_issue.get(i["issue_type"], 0)
        rows.append((f"cases: {i['name']}", f"{i['cases']:,}", f"ground truth {n:,}"))
    for t in report["time_to_removal"][:3]:
        rows.append(
            (
                f"time to removal, {t['name']} (median, p90)",
                f"{t['median_hours'] * 3600:.0f} s, {t['p90_hours'] * 3600:.0f} s",
                "pipeline time, not the platform's",
            )
        )
    rows.append(("the year took, end to end", f"{seconds:.1f} s", "publish to last outcome"))
    width = max(len(r[0]) for r in rows)
    return [f"{name:<{width}}  {value}  ({note})" for name, value, note in rows]


async def year_on_fresh_stack(
    settings: Settings, year: Year, latency_ms: float | None, name: str
) -> tuple[YearRun, Stack]:
    """`run_year` on a fresh bench stack accepting simulated reports (`latency_ms` None:
    the simulator's default); returns the run and the stopped stack."""
    env = {"HELPLINE_ALLOW_SIMULATED_REPORTS": "true"}
    if latency_ms is not None:
        env["HELPLINE_SIMULATOR_LATENCY_MS"] = str(latency_ms)
    stack = await bench_stack(settings, f"{name}-{uuid.uuid4().hex[:8]}", env)
    try:
        await stack.start_services()
        return await run_year(stack, year), stack
    finally:
        await asyncio.to_thread(stack.stop)


async def run_simulate(
    settings: Settings, *, year: int, seed: int, scale: float, latency_ms: float | None
) -> int:
    """`helpline simulate`: generate, start a stack, run the year, print, stop the stack."""
    generated = generate(year, seed, scale)
    print(
        f"helpline simulate: {generated.truth.cases:,} cases, {generated.truth.urls:,} URLs "
        f"of {year} (seed {seed}); starting the stack",
        flush=True,
    )
    result, _ = await year_on_fresh_stack(settings, generated, latency_ms, "simulate")
    print(f"\nThe annual report for {year} from metrics, beside the generator's ground truth:")
    for line in lines(result.report, generated.truth, result.seconds):
        print(line)
    return 0
