"""`helpline bench --scenario isolation`: one slow, rate-limited platform and the others.

In one run, on one stack, the same workload (reports whose URLs are spread evenly over
the platforms) goes through with no faults, then `rounds` times with one platform
answering in 2 s and with 429s (the simulator's per-platform behaviour, set at run time
through its control endpoint) and with no faults again. For each pass it measures the
*other* platforms' escalation throughput: their escalations decided per second, from the
first escalation of the pass recorded to the last of theirs decided. It ends with the
share of the fault-free throughput they kept with the faults (each kind of pass taken
together). With `backlog` it then queues that many escalations on the faulty platform at
once, faults on, and runs the workload once more, sampling the escalator's RSS
throughout: memory must not grow with the backlog. It prints figures; it passes or fails
nothing.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from rich.console import Console

from helpline_cli.bench.backlog import RssSampler, add_backlog
from helpline_cli.bench.passes import FINAL, URLS, Faults, Pass, reports, run_pass
from helpline_cli.bench.run import bench_stack
from helpline_cli.stack import Stack
from helpline_shared.settings import Settings


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
    rounds: int = 2,
) -> int:
    """The whole scenario on a fresh stack; prints the figures and the `isolation:` line.
    Returns 2, starting nothing, for a faulty platform the workload does not use or fewer
    than one faulty pass (there would be nothing to compare)."""
    if faulty not in URLS or rounds < 1:
        problem = (
            f"--faulty-platform must be one of {', '.join(URLS)} (the platforms the "
            f"workload spreads over), not {faulty!r}"
            if faulty not in URLS
            else f"--rounds must be at least 1, not {rounds}"
        )
        print(f"helpline bench --scenario isolation: {problem}", file=sys.stderr)
        return 2
    console = Console(width=max(120, Console().width))
    run = f"iso-{uuid.uuid4().hex[:8]}"
    console.print(
        f"helpline bench --scenario isolation: starting the stack; faulty platform {faulty}"
    )
    stack = await bench_stack(settings, run)
    try:
        await stack.start_services()
        db = await asyncpg.connect(stack.settings.database_url)
        sampler = RssSampler(stack.procs["escalator"].pid)
        sampler.start()
        try:
            scenario = Scenario(stack, db, console, run, urls_per_report, faulty)
            passes = await scenario.passes(reports_n, faults, backlog, sampler, rounds)
            end = await scenario.the_end()
        finally:
            sampler.stop()
            await db.close()
    finally:
        await asyncio.to_thread(stack.stop)
    baseline = _rate([p for p in passes if p.name.startswith("no faults")])
    slowed = _rate([p for p in passes if p.name.endswith("slow + 429")])
    say = functools.partial(console.print, highlight=False)
    say(
        f"\n{reports_n} reports x {urls_per_report} URLs per pass, spread evenly over "
        f"{', '.join(URLS)}; faulty: {faulty} ({faults.latency_s:.0f} s per answer, "
        f"{faults.rate_limit_rate:.0%} answered 429 with Retry-After {faults.retry_after_s:g} s)"
    )
    say(f"  {'pass':<34} {'others':>7} {'seconds':>8} {'others/s':>10} {faulty + ' decided':>17}")
    for p in passes:
        say(_line(p))
    for line in end:
        say(line)
    rss = (
        f"escalator RSS (MB): no faults peak {sampler.peak('no faults'):.0f}, {faulty} slow "
        f"peak {sampler.peak('faults'):.0f}"
    )
    if backlog:
        kept_backlog = _rate(passes[-1:]) / baseline if baseline else 0.0
        rss += (
            f", {backlog:,} escalations waiting on {faulty} peak "
            f"{sampler.peak('backlog'):.0f} (the others kept {kept_backlog:.1%} meanwhile)"
        )
    say(rss)
    kept = slowed / baseline if baseline else 0.0
    print(
        f"isolation: {kept:.1%} of fault-free throughput kept by the other platforms "
        f"({slowed:.0f}/s vs {baseline:.0f}/s over {rounds} faulty and {rounds + 1} "
        "fault-free passes, alternating)"
    )
    return 0


def _rate(passes: list[Pass]) -> float:
    """The other platforms' escalations decided per second over several passes."""
    seconds = sum(p.seconds for p in passes)
    return sum(p.others for p in passes) / seconds if seconds else 0.0


@dataclass
class Scenario:
    stack: Stack
    db: asyncpg.Connection
    console: Console
    run: str
    urls_per_report: int
    faulty: str

    async def one(self, name: str, tag: str, n: int) -> Pass:
        run = f"{self.run}-{tag}"
        payloads = reports(n, self.urls_per_report, run)
        return await run_pass(self.stack, self.db, name, payloads, run, self.faulty)

    async def waiting(self) -> int:
        n = await self.db.fetchval(
            "SELECT count(*) FROM escalator.escalations"
            " WHERE platform = $1 AND state <> ALL($2::text[])",
            self.faulty,
            list(FINAL),
        )
        return int(n)

    async def drain(self, timeout_s: float = 300) -> None:
        """Wait until the faulty platform has nothing left waiting (its circuit may first
        have to let a probe through)."""
        with self.console.status(f"waiting for {self.faulty}'s backlog to clear"):
            deadline = time.monotonic() + timeout_s
            while True:
                if not await self.waiting() or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.5)

    async def passes(
        self, n: int, faults: Faults, backlog: int, sampler: RssSampler, rounds: int
    ) -> list[Pass]:
        """Warm-up; no faults; then `rounds` times: faults, and no faults again (once the
        faulty platform's own backlog has cleared); then, with `backlog`, faults and that
        many escalations queued on the faulty platform at once."""
        await self.one("warm-up", "w", 50)
        sampler.mark("no faults")
        passes = [await self.one("no faults", "a0", n)]
        for r in range(1, rounds + 1):
            await _simulate(self.stack, {"platforms": {self.faulty: faults.simulator_config()}})
            sampler.mark("faults")
            passes.append(await self.one(f"{self.faulty} slow + 429", f"b{r}", n))
            await _simulate(self.stack, {"platforms": {self.faulty: None}})
            await self.drain()
            sampler.mark("no faults")
            passes.append(await self.one("no faults", f"a{r}", n))
        if backlog:
            await _simulate(self.stack, {"platforms": {self.faulty: faults.simulator_config()}})
            self.console.print(
                f"queueing {backlog:,} escalations on {self.faulty} at once (then VACUUM "
                "ANALYZE, as autovacuum would have done while they built up)"
            )
            await add_backlog(self.db, self.faulty, backlog)
            await self.db.execute("VACUUM ANALYZE escalator.escalations")
            sampler.mark("backlog")
            passes.append(await self.one(f"{self.faulty} slow + 429 + backlog", "d", n))
        return passes

    async def the_end(self) -> list[str]:
        """What the simulator answered, the circuits, and what still waits."""
        await asyncio.sleep(5)  # the escalator keeps working on what waits
        stats = await _simulate(self.stack, None)
        answers = ", ".join(
            f"{slug} {dict(sorted(a.items()))}"
            for slug, a in sorted(stats["answers_by_platform"].items())
        )
        return [
            f"simulator's answers: {answers}",
            f"at the end: {await _circuits(self.stack)}; {await self.waiting():,} "
            f"escalations of {self.faulty} waiting",
        ]


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
