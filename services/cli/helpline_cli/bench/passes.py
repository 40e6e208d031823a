"""One pass of the isolation scenario: a workload spread evenly over the platforms,
published at once, timed until every escalation of the other platforms is final."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from helpline_cli.bench.workload import produce
from helpline_cli.stack import Stack
from helpline_shared.topics import REPORTS_SUBMITTED

URLS = {
    "tiktok": "https://www.tiktok.com/@acct{i}/video/{n}",
    "instagram": "https://www.instagram.com/p/{n}/",
    "facebook": "https://www.facebook.com/posts/{n}",
    "youtube": "https://www.youtube.com/watch?v={n}",
    "x": "https://x.com/acct{i}/status/{n}",
    "snapchat": "https://www.snapchat.com/add/acct{i}{n}",
}
FINAL = ("decided", "failed", "needs_manual")


def on_platform(url: str, slug: str) -> bool:
    """The workload's `url` is on platform `slug` (its host is that platform's, exactly:
    `x` is x.com, not any host with an x in it)."""
    return urlsplit(url).hostname == urlsplit(URLS[slug]).hostname


@dataclass(frozen=True)
class Faults:
    """How the faulty platform answers: every call after `latency_s` (0.5 to 1.5 times,
    the simulator's spread), a share `rate_limit_rate` with 429 and `Retry-After`."""

    latency_s: float = 2.0
    rate_limit_rate: float = 0.3
    retry_after_s: float = 1.0

    def simulator_config(self) -> dict[str, float]:
        return {
            "latency_ms": self.latency_s * 1000,
            "rate_limit_rate": self.rate_limit_rate,
            "retry_after_s": self.retry_after_s,
        }


@dataclass(frozen=True)
class Pass:
    name: str
    others: int  # the other platforms' escalations decided
    seconds: float
    faulty_decided: int
    faulty_total: int

    @property
    def throughput(self) -> float:
        return self.others / self.seconds if self.seconds else 0.0


def reports(n: int, urls_per_report: int, run: str) -> list[bytes]:
    """`n` reports, their URLs spread evenly over the platforms, every URL new."""
    rng = random.Random(run)  # new content in every pass: content is escalated once
    slugs = list(URLS)
    out = []
    for i in range(n):
        urls = [
            URLS[slugs[(i * urls_per_report + k) % len(slugs)]].format(
                i=i, n=rng.randrange(10**12) * 100 + k
            )
            for k in range(urls_per_report)
        ]
        body = {
            "schema_version": 1,
            "source": "bench",
            "report_id": f"{run}-{i}",
            "reporter": {"name": "Bench Reporter", "email": "bench@school.example"},
            "organisation": "Bench School",
            "description": "Pupils are bullying a teacher in these videos.",
            "urls": urls,
        }
        out.append(json.dumps(body).encode())
    return out


async def _counts(db: asyncpg.Connection, run: str, faulty: str) -> asyncpg.Record:
    row = await db.fetchrow(
        """
        SELECT count(*) FILTER (WHERE e.platform <> $2) AS others,
               count(*) FILTER (WHERE e.platform <> $2 AND e.state = ANY($3)) AS others_final,
               count(*) FILTER (WHERE e.platform <> $2 AND e.state = 'decided') AS others_decided,
               count(*) FILTER (WHERE e.platform = $2) AS faulty,
               count(*) FILTER (WHERE e.platform = $2 AND e.state = 'decided') AS faulty_decided,
               min(e.created_at) AS first,
               max(e.decided_at) FILTER (WHERE e.platform <> $2) AS last
        FROM intake.reports i JOIN escalator.escalations e USING (case_id)
        WHERE i.report_id LIKE $1
        """,
        f"{run}-%",
        faulty,
        list(FINAL),
    )
    assert row is not None
    return row


async def run_pass(  # noqa: PLR0917
    stack: Stack, db: asyncpg.Connection, name: str, payloads: list[bytes], run: str, faulty: str
) -> Pass:
    """Publish the workload; wait (with a progress bar) until every escalation of the other
    platforms is final; measure."""
    expected_others = sum(
        1 for p in payloads for u in json.loads(p)["urls"] if not on_platform(u, faulty)
    )
    with Progress(
        TextColumn("{task.description:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as progress:
        others = progress.add_task(f"{name}: other platforms final", total=expected_others)
        slow = progress.add_task(f"{name}: {faulty} decided", total=None)
        await produce(stack.settings, REPORTS_SUBMITTED.name, payloads)
        deadline = time.monotonic() + 900
        while True:
            row = await _counts(db, run, faulty)
            progress.update(others, completed=row["others_final"])
            progress.update(slow, completed=row["faulty_decided"], total=row["faulty"] or None)
            if row["others"] >= expected_others and row["others_final"] >= row["others"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: the other platforms did not finish in 900 s")
            await asyncio.sleep(0.5)
    seconds = (row["last"] - row["first"]).total_seconds()
    return Pass(name, row["others_decided"], seconds, row["faulty_decided"], row["faulty"])
