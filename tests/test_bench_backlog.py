"""`helpline bench --backlog N` through the real stack (its own Tansu broker, a fresh
database on the session's PostgreSQL, every service as a process): the backlog published
while the services are stopped is drained in full, and the printed figures are there and
consistent. Nothing here depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from pathlib import Path

import asyncpg
import pytest
from rich.console import Console

from helpline_cli.bench.drain import FINAL, drain_backlog, drain_table, summary
from helpline_cli.bench.run import bench_stack
from helpline_cli.main import _parser
from helpline_cli.stack import SERVICES
from helpline_shared.settings import Settings
from tests.infra import Infra

N = 300

# Services that read the backlog (or what it became) and so grow while it drains.
CONSUMERS = ("intake", "triage", "escalator", "metrics")


def test_the_flags_reach_the_bench() -> None:
    args = _parser().parse_args(["bench", "--backlog", "2000", "--urls-per-report", "3"])
    assert (args.backlog, args.urls_per_report, args.year) == (2000, 3, False)
    assert _parser().parse_args(["bench", "--year"]).year is True
    assert _parser().parse_args(["bench"]).backlog is None


async def test_a_backlog_drains_and_its_figures_are_printed(
    infra: Infra, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bench's own embedded broker, so that no other test's topics are read.
    monkeypatch.delenv("HELPLINE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    settings = Settings(data_dir=tmp_dir / "backlog")
    stack = await bench_stack(
        settings,
        f"backlog_test_{uuid.uuid4().hex[:8]}",
        {"HELPLINE_DATABASE_URL": infra.database_url},
    )
    try:
        d = await drain_backlog(stack, N, 2)
        db = await asyncpg.connect(stack.settings.database_url)
        try:
            received = await db.fetchval("SELECT count(*) FROM intake.reports")
            final = await db.fetchval(
                "SELECT count(*) FROM escalator.escalations WHERE state = ANY($1)", FINAL
            )
            counted = await db.fetchval("SELECT count(*) FROM metrics.cases")
        finally:
            await db.close()
    finally:
        await asyncio.to_thread(stack.stop)

    assert (received, final, counted) == (N, 2 * N, N)
    assert (d.reports, d.urls) == (N, 2 * N)
    assert set(d.baseline_mb) == set(d.peak_mb) == set(SERVICES)
    assert all(v > 0 for v in d.baseline_mb.values())
    assert all(d.peak_mb[s] >= d.baseline_mb[s] for s in CONSUMERS)
    assert all(d.peak_mb[s] > 0 for s in SERVICES)
    assert 0 <= d.intake_s <= d.drain_s <= d.total_s
    assert d.drain_s > 0
    assert d.reports_per_s > 0
    assert d.urls_per_s == pytest.approx(2 * d.reports_per_s)

    out = io.StringIO()
    console = Console(file=out, width=120)
    console.print(drain_table(d))
    for line in summary(d):
        console.print(line)
    text = out.getvalue()
    for service in SERVICES:
        row = re.search(rf"│ {service}\s+│\s+(\d+) │\s+(\d+) │", text)
        assert row is not None, text
        assert (int(row[1]), int(row[2])) == (
            round(d.baseline_mb[service]),
            round(d.peak_mb[service]),
        )
    assert f"published {N:,} reports ({2 * N:,} URLs)" in text
    rate = re.search(r"drain rate: ([\d,]+) reports/s, ([\d,]+) URLs/s", text)
    assert rate is not None, text
    assert int(rate[2].replace(",", "")) >= int(rate[1].replace(",", "")) > 0
