"""`helpline report` (the annual report) and `helpline metrics rebuild` (totals from replay).

Both read and write the database directly (HELPLINE_DATABASE_URL), through the same
functions as the metrics service: the report is :func:`helpline_metrics.report.annual_report`
(also `GET /v1/report`), the rebuild is :mod:`helpline_metrics.rebuild`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from helpline_metrics import rebuild
from helpline_metrics.report import annual_report
from helpline_metrics.report_render import FORMATS, render
from helpline_shared.settings import Settings


def add_parser(sub: Any) -> None:
    """`helpline report --year YYYY [--format html|csv|json] [--output FILE]` and
    `helpline metrics rebuild`."""
    report = sub.add_parser("report", help="the annual report (cases received in a year)")
    report.add_argument("--year", type=int, required=True, help="e.g. 2024")
    report.add_argument("--format", choices=FORMATS, default="html", help="default: html")
    report.add_argument("--output", "-o", default=None, help="write to FILE, not stdout")
    metrics = sub.add_parser("metrics", help="metrics' totals")
    actions = metrics.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "rebuild",
        help="recompute every total from the beginning of the topics and swap it in "
        "(stop the metrics service first)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        print("set HELPLINE_DATABASE_URL", file=sys.stderr)
        return 2
    conn = await asyncpg.connect(settings.database_url)
    try:
        if args.command == "report":
            return await _report(conn, args)
        return await rebuild_command(conn, settings, Console())
    finally:
        await conn.close()


async def _report(conn: Any, args: argparse.Namespace) -> int:
    text = render(await annual_report(conn, args.year), args.format)
    if args.output:
        _write(Path(args.output), text)
        print(f"wrote the {args.year} report ({args.format}) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


async def rebuild_command(conn: Any, settings: Settings, console: Console) -> int:
    """Prepares, replays with a progress bar, swaps, and prints before/after figures."""
    started = time.monotonic()
    before = await rebuild.headline(conn)
    tables = await rebuild.prepare(conn)
    console.print(f"rebuilding {len(tables)} table(s) into schema {rebuild.FRESH}")
    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("replay", total=None)
        read = 0

        def advance(n: int) -> None:
            nonlocal read
            read += n
            total = progress.tasks[0].total
            if total is not None and read > total:  # the broker's end offset fell short
                progress.update(task, total=read)
            progress.update(task, completed=read)

        done = await rebuild.replay(
            settings,
            conn,
            on_start=lambda total: progress.update(task, total=total),
            on_batch=advance,
        )
    await rebuild.swap(conn)
    after = await rebuild.headline(conn)
    table = Table(title="metrics rebuilt")
    for column in ("figure", "before", "after", ""):
        table.add_column(column, justify="right" if column in ("before", "after") else "left")
    for name, value in after.items():
        old = before.get(name, 0)
        table.add_row(name, f"{old:,}", f"{value:,}", "" if old == value else "differs")
    console.print(table)
    console.print(
        f"{done.records:,} record(s) read, {done.counted:,} event(s) counted, "
        f"{done.refused:,} refused (as the service refuses them), "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0
