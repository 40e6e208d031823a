"""`helpline bench --scenario isolation`: one slow, rate-limited platform and the others.

In one run, on one stack, the same workload (reports whose URLs are spread evenly over
the platforms) goes through twice: with no faults, then with one platform answering in
2 s and with 429s (the simulator's per-platform behaviour, set at run time through its
control endpoint). For each pass it measures the *other*
platforms' escalation throughput: their escalations decided per second, from the first
escalation of the pass recorded to the last of theirs decided. It ends with the share of
the fault-free throughput they kept. With `backlog` it then queues that many escalations
on the faulty platform at once and runs the workload a third time, sampling the
escalator's RSS: memory must not grow with the backlog. It prints figures and passes or
fails nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from helpline_cli.bench.backlog import RssSampler, add_backlog
from helpline_cli.bench.run import bench_stack
from helpline_cli.bench.workload import produce
from helpline_cli.stack import Stack
from helpline_shared.settings import Settings
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
        1 for p in payloads for u in json.loads(p)["urls"] if faulty not in u.split("/")[2]
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


def _line(p: Pass) -> str:
    return (
        f"  {p.name:<34} {p.others:>7} {p.seconds:>8.1f} {p.throughput:>10.1f}"
        f" {p.faulty_decided:>8}/{p.faulty_total:<8}"
    )


async def run_isolation(
    settings: Settings,
    *,
    reports_n: int,
    urls_per_report: int,
    faulty: str,
    faults: Faults,
    backlog: int,
) -> int:
    """The whole scenario on a fresh stack; prints the figures and the `isolation:` line."""
    console = Console(width=max(120, Console().width))
    run = f"iso-{uuid.uuid4().hex[:8]}"
    console.print(
        f"helpline bench --scenario isolation: starting the stack; faulty platform {faulty}"
    )
    stack = await bench_stack(settings, run)
    try:
        await stack.start_services()
        result = await _passes(
            stack, console, run, reports_n, urls_per_report, faulty, faults, backlog
        )
    finally:
        await asyncio.to_thread(stack.stop)
    passes, sampler, circuits, waiting, answers = result
    clean, faulty_pass = passes[0], passes[1]
    console.print(
        f"\n{reports_n} reports x {urls_per_report} URLs per pass, spread evenly over "
        f"{', '.join(URLS)}; faulty: {faulty} ({faults.latency_s:.0f} s per answer, "
        f"{faults.rate_limit_rate:.0%} answered 429 with Retry-After {faults.retry_after_s} s)",
        highlight=False,
    )
    console.print(
        f"  {'pass':<34} {'others':>7} {'seconds':>8} {'others/s':>10} {faulty + ' decided':>17}",
        highlight=False,
    )
    for p in passes:
        console.print(_line(p), highlight=False)
    console.print(f"simulator's answers: {answers}", highlight=False)
    console.print(f"at the end: {circuits}", highlight=False)
    rss = (
        f"escalator RSS (MB): fault-free peak {sampler.peak('no faults'):.0f}, with faults "
        f"peak {sampler.peak('faults'):.0f}"
    )
    if backlog:
        rss += (
            f", with {backlog:,} escalations queued on {faulty} peak "
            f"{sampler.peak('backlog'):.0f} ({waiting:,} still waiting at the end)"
        )
    console.print(rss, highlight=False)
    kept = faulty_pass.throughput / clean.throughput if clean.throughput else 0.0
    print(
        f"isolation: {kept:.1%} of fault-free throughput kept by the other platforms "
        f"({faulty_pass.throughput:.0f}/s vs {clean.throughput:.0f}/s)"
    )
    return 0


async def _passes(  # noqa: PLR0917
    stack: Stack,
    console: Console,
    run: str,
    reports_n: int,
    urls_per_report: int,
    faulty: str,
    faults: Faults,
    backlog: int,
) -> tuple[list[Pass], RssSampler, str, int, str]:
    db = await asyncpg.connect(stack.settings.database_url)
    sampler = RssSampler(stack.procs["escalator"].pid)
    sampler.start()
    try:

        async def one(name: str, tag: str, n: int) -> Pass:
            return await run_pass(
                stack,
                db,
                name,
                reports(n, urls_per_report, f"{run}-{tag}"),
                f"{run}-{tag}",
                faulty,
            )

        await one("warm-up", "w", 50)
        sampler.mark("no faults")
        passes = [await one("no faults", "a", reports_n)]
        await _simulate(stack, {"platforms": {faulty: faults.simulator_config()}})
        sampler.mark("faults")
        passes.append(await one(f"{faulty} slow + 429", "b", reports_n))
        waiting = 0
        if backlog:
            console.print(f"queueing {backlog:,} escalations on {faulty} at once")
            await add_backlog(db, faulty, backlog)
            sampler.mark("backlog")
            passes.append(await one(f"{faulty} slow + 429 + backlog", "c", reports_n))
            await asyncio.sleep(10)  # the escalator keeps working through the backlog
            waiting = await db.fetchval(
                "SELECT count(*) FROM escalator.escalations"
                " WHERE platform = $1 AND state <> ALL($2::text[])",
                faulty,
                list(FINAL),
            )
        stats = await _simulate(stack, None)
        answers = ", ".join(
            f"{slug} {dict(sorted(a.items()))}"
            for slug, a in sorted(stats["answers_by_platform"].items())
        )
        return passes, sampler, await _circuits(stack), waiting, answers
    finally:
        sampler.stop()
        await db.close()


async def _simulate(stack: Stack, config: dict[str, Any] | None) -> dict[str, Any]:
    """Change the simulator's behaviour (`config`), or read its statistics (None)."""
    async with httpx.AsyncClient(base_url=stack.url("simulator"), timeout=10) as client:
        if config is None:
            r = await client.get("/_sim/stats")
        else:
            r = await client.post("/_sim/config", json=config)
        r.raise_for_status()
        return dict(r.json())


async def _circuits(stack: Stack) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(f"{stack.url('escalator')}/health/ready")
        body = r.json()
        detail = body.get("details", {}).get("open_circuits", {})
        return f"readiness {body.get('status')}, open circuits: {detail or 'none'}"
