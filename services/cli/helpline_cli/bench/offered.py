"""An offered load: reports published on a schedule that never waits for the system.

Report `i` of a run at `rate` reports/s is due at `t0 + i / rate`; the producer sends it
then (or at once, if it fell behind), and its latency is measured from that scheduled time
to the moment its last URL's outcome (other than `submitted`) is read from
`helpline.escalations.outcomes`. So a system that cannot keep up shows a growing latency
rather than a slower producer (the coordinated-omission mistake of a closed loop).

Where the time went comes from the services' own records of each report (intake's receipt,
triage's decision, the escalator's rows and attempts) joined on the case id, on the
machine's wall clock that every process shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.progress import Progress

from helpline_cli.bench.pipeline import Completion
from helpline_cli.bench.workload import make_reports
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings
from helpline_shared.topics import ESCALATION_OUTCOMES, REPORTS_SUBMITTED

# The stages of one report, in the order they happen; each is read as a wall-clock time.
STAGES = (
    ("published", "scheduled publish"),
    ("received", "received by intake"),
    ("triaged", "triaged"),
    ("escalated", "escalation recorded"),
    ("called", "platform call started"),
    ("decided", "decision recorded"),
    ("outcome", "outcome read"),
)

_STAGE_TIMES = """
SELECT i.case_id,
       extract(epoch FROM i.received_at) AS received,
       (SELECT extract(epoch FROM min(d.decided_at)) FROM triage.decisions d
        WHERE d.case_id = i.case_id) AS triaged,
       (SELECT extract(epoch FROM max(e.created_at)) FROM escalator.escalations e
        WHERE e.case_id = i.case_id) AS escalated,
       (SELECT extract(epoch FROM max(a.started_at))
        FROM escalator.escalations e JOIN escalator.attempts a USING (escalation_id)
        WHERE e.case_id = i.case_id AND a.kind = 'submit') AS called,
       (SELECT extract(epoch FROM max(e.decided_at)) FROM escalator.escalations e
        WHERE e.case_id = i.case_id) AS decided
FROM intake.reports i WHERE i.source = 'bench' AND i.report_id LIKE $1
"""


async def _publish_on_schedule(
    producer: AIOKafkaProducer, payloads: list[bytes], rate: float
) -> tuple[float, float]:
    """Send payload `i` at `t0 + i / rate` (at once when behind); returns t0 on the wall
    clock and how long publishing took until the broker acknowledged the last."""
    loop = asyncio.get_running_loop()
    t0_mono = loop.time() + 0.1
    t0_wall = time.time() + (t0_mono - loop.time())
    pending = []
    for i, p in enumerate(payloads):
        wait = t0_mono + i / rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        pending.append(await producer.send(REPORTS_SUBMITTED.name, p, key=str(i).encode()))
    await asyncio.gather(*pending)
    return t0_wall, loop.time() - t0_mono


def percentile(data: list[float], q: float) -> float:
    """The `q`th percentile by nearest rank (nan when there is no data)."""
    if not data:
        return float("nan")
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class OfferedRun:
    """One run's figures: latencies (ms) by report index, and where the time went."""

    rate: float
    duration_s: float
    offered: int
    achieved_rate: float  # reports/s actually published over the run
    completed_rate: float  # reports/s whose outcomes were all read, first to last
    latency_ms: dict[int, float] = field(default_factory=dict)
    stages_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def unfinished(self) -> int:
        return self.offered - len(self.latency_ms)

    def all(self) -> list[float]:
        return list(self.latency_ms.values())

    def second_half(self) -> list[float]:
        return [v for i, v in self.latency_ms.items() if i >= self.offered // 2]

    def p(self, q: float, second_half: bool = False) -> float:
        """A latency percentile; a report never finished counts as infinitely late."""
        data = self.second_half() if second_half else self.all()
        missing = (self.offered - self.offered // 2 if second_half else self.offered) - len(data)
        return percentile(data + [float("inf")] * missing, q)


async def offered_load(
    settings: Settings,
    *,
    rate: float,
    duration_s: float,
    urls_per_report: int,
    progress: Progress | None = None,
    settle_s: float = 20.0,
) -> OfferedRun:
    """Publish `rate * duration_s` reports on schedule to a running stack, wait up to
    `settle_s` after the last for their outcomes, and return the figures."""
    run = f"offered-{uuid.uuid4().hex[:8]}"
    payloads = make_reports(max(1, round(rate * duration_s)), urls_per_report, run)
    n = len(payloads)
    completion = Completion(payloads)
    sink = AIOKafkaConsumer(
        ESCALATION_OUTCOMES.name,
        **client_kwargs(settings, "bench-offered-out"),
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=5,
    )
    await sink.start()
    await sink.getmany(timeout_ms=200)  # at the end of the topic before the first publish
    producer = AIOKafkaProducer(**client_kwargs(settings, "bench-offered"), acks="all", linger_ms=0)
    await producer.start()
    done_wall: dict[int, float] = {}
    all_done = asyncio.Event()

    async def drain() -> None:
        while len(done_wall) < n:
            batch = await sink.getmany(timeout_ms=50)
            now = time.time()
            for records in batch.values():
                for r in records:
                    if (i := completion.see(r.value)) is not None:
                        done_wall[i] = now
                        if progress is not None and task is not None:
                            progress.update(task, completed=len(done_wall))
        all_done.set()

    task = (
        progress.add_task(f"{rate:g} reports/s for {duration_s:g} s", total=n)
        if progress is not None
        else None
    )
    sink_task = asyncio.create_task(drain())
    try:
        t0_wall, published_s = await _publish_on_schedule(producer, payloads, rate)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_done.wait(), settle_s)
    finally:
        sink_task.cancel()
        await asyncio.gather(sink_task, return_exceptions=True)
        await producer.stop()
        await sink.stop()
    scheduled = {i: t0_wall + i / rate for i in range(n)}
    latency = {i: (done_wall[i] - scheduled[i]) * 1000 for i in done_wall}
    span = (max(done_wall.values()) - t0_wall) if done_wall else float("nan")
    out = OfferedRun(
        rate=rate,
        duration_s=duration_s,
        offered=n,
        achieved_rate=n / max(published_s, 1e-9) if n > 1 else float(n),
        completed_rate=len(done_wall) / span if done_wall else 0.0,
        latency_ms=latency,
    )
    if settings.database_url:
        out.stages_ms = await _stages(
            settings.database_url, run, completion.index, scheduled, done_wall
        )
    return out


async def _stages(
    database_url: str,
    run: str,
    case_of: dict[uuid.UUID, int],
    scheduled: dict[int, float],
    done_wall: dict[int, float],
) -> dict[str, list[float]]:
    """Per finished report, the milliseconds each stage took after the one before."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(_STAGE_TIMES, f"{run}-%")
    finally:
        await conn.close()
    out: dict[str, list[float]] = {label: [] for _, label in STAGES[1:]}
    for r in rows:
        i = case_of.get(r["case_id"])
        if i is None or i not in done_wall:
            continue
        at = {"published": scheduled[i], "outcome": done_wall[i]}
        at.update(
            {
                k: float(r[k])
                for k in ("received", "triaged", "escalated", "called", "decided")
                if r[k] is not None
            }
        )
        if len(at) < len(STAGES):
            continue
        for (before, _), (stage, label) in itertools.pairwise(STAGES):
            out[label].append((at[stage] - at[before]) * 1000)
    return out


def stage_medians(run: OfferedRun) -> dict[str, tuple[float, float]]:
    """Each stage's median and p99 in milliseconds."""
    return {
        label: (statistics.median(v) if v else float("nan"), percentile(v, 99))
        for label, v in run.stages_ms.items()
    }
