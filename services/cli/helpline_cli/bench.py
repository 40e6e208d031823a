"""`helpline bench`: the pipeline's throughput and latency beside a raw aiokafka relay.

Both run in the same invocation on the same broker. The baseline is a relay through as
many stages as the pipeline has (intake, triage, escalator): each stage consumes a batch,
validates every message with pydantic, produces it to the next topic and commits. The
pipeline figures run from publishing a report to the last of its URLs' outcomes appearing
on `helpline.escalations.outcomes` (escalation recorded in PostgreSQL, platform called,
outcome published). It prints figures; it passes or fails nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from helpline_cli.infra import free_port
from helpline_cli.stack import Stack
from helpline_shared.events import EscalationOutcomeV1, ReportSubmittedV1, derive_id
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings
from helpline_shared.topics import ESCALATION_OUTCOMES, REPORTS_SUBMITTED

STAGES = 3
PLATFORM_URLS = [
    ("https://www.tiktok.com/@acct{i}/video/{n}", 76),
    ("https://www.instagram.com/p/{n}/", 9),
    ("https://www.facebook.com/posts/{n}", 5),
    ("https://www.youtube.com/watch?v={n}", 5),
    ("https://x.com/acct{i}/status/{n}", 3),
    ("https://www.snapchat.com/add/acct{i}{n}", 2),
]


@dataclass(frozen=True)
class Figures:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]


def make_reports(n: int, urls_per_report: int, run: str) -> list[bytes]:
    rng = random.Random(n)
    out = []
    for i in range(n):
        urls = [
            rng.choices([u for u, _ in PLATFORM_URLS], [w for _, w in PLATFORM_URLS])[0].format(
                i=i, n=rng.randrange(10**12) * 100 + k
            )
            for k in range(urls_per_report)
        ]
        out.append(
            json.dumps(
                {
                    "schema_version": 1,
                    "source": "bench",
                    "report_id": f"{run}-{i}",
                    "reporter": {"name": "Bench Reporter", "email": "bench@school.example"},
                    "organisation": "Bench School",
                    "description": "Pupils are bullying a teacher in these videos.",
                    "urls": urls,
                }
            ).encode()
        )
    return out


async def _produce(settings: Settings, topic: str, payloads: list[bytes]) -> dict[int, float]:
    """Publish as fast as the producer allows; returns the send time of each payload."""
    producer = AIOKafkaProducer(**client_kwargs(settings, "bench"), acks="all", linger_ms=5)
    await producer.start()
    sent: dict[int, float] = {}
    try:
        futures = []
        for i, p in enumerate(payloads):
            sent[i] = time.monotonic()
            futures.append(
                await producer.send(topic, p, key=str(i).encode(), headers=[("i", str(i).encode())])
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def _relay_stage(  # noqa: PLR0917
    settings: Settings, src: str, dst: str, n: int, group: str, ready: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        src,
        **client_kwargs(settings, group),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**client_kwargs(settings, group), acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while not consumer.assignment():  # join the group before the clock starts
            await consumer.getmany(timeout_ms=100)
        ready.set()
        while done < n:
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            futures = []
            for records in batch.values():
                for r in records:
                    ReportSubmittedV1.model_validate_json(r.value)
                    futures.append(
                        await producer.send(dst, r.value, key=r.key, headers=list(r.headers))
                    )
            await asyncio.gather(*futures)
            if futures:
                await consumer.commit()
            done += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()


async def raw_relay(settings: Settings, payloads: list[bytes]) -> Figures:
    run = uuid.uuid4().hex[:8]
    topics = [f"bench.relay.{run}.{i}" for i in range(STAGES + 1)]
    admin = AIOKafkaAdminClient(**client_kwargs(settings, "bench-admin"))
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, settings.kafka_topic_partitions, settings.kafka_replication_factor)
                for t in topics
            ]
        )
    finally:
        await admin.close()
    n = len(payloads)
    received: dict[int, float] = {}
    sink = AIOKafkaConsumer(
        topics[-1],
        **client_kwargs(settings, "bench-sink"),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await sink.start()

    async def drain() -> None:
        while len(received) < n:
            batch = await sink.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    received[int(dict(r.headers)["i"])] = now

    ready = [asyncio.Event() for _ in range(STAGES)]
    stages = [
        asyncio.create_task(
            _relay_stage(settings, topics[i], topics[i + 1], n, f"bench-{run}-{i}", ready[i])
        )
        for i in range(STAGES)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 120)
    await sink.getmany(timeout_ms=200)
    sink_task = asyncio.create_task(drain())
    sent = await _produce(settings, topics[0], payloads)
    await asyncio.wait_for(asyncio.gather(sink_task, *stages), 600)
    await sink.stop()
    start = min(sent.values())
    return Figures(
        f"raw aiokafka relay, {STAGES} stages",
        n,
        max(received.values()) - start,
        [(received[i] - sent[i]) * 1000 for i in range(n)],
    )


async def pipeline(stack: Stack, payloads: list[bytes], urls_per_report: int) -> Figures:
    settings = stack.settings
    case_of = {
        derive_id("case", "bench", json.loads(p)["report_id"]): i for i, p in enumerate(payloads)
    }
    expected = {i: len(set(json.loads(p)["urls"])) for i, p in enumerate(payloads)}
    sink = AIOKafkaConsumer(
        ESCALATION_OUTCOMES.name,
        **client_kwargs(settings, "bench-out"),
        group_id=None,
        auto_offset_reset="latest",
    )
    await sink.start()
    await sink.getmany(timeout_ms=200)  # join at the end of the topic before publishing
    finished: dict[int, set[uuid.UUID]] = {}
    done_at: dict[int, float] = {}
    n = len(payloads)

    async def drain() -> None:
        while len(done_at) < n:
            batch = await sink.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    e = EscalationOutcomeV1.model_validate_json(r.value)
                    i = case_of.get(e.case_id)
                    if i is None or e.state == "submitted":
                        continue
                    finished.setdefault(i, set()).add(e.escalation_id)
                    if len(finished[i]) == expected[i] and i not in done_at:
                        done_at[i] = now

    sink_task = asyncio.create_task(drain())
    sent = await _produce(settings, REPORTS_SUBMITTED.name, payloads)
    await asyncio.wait_for(sink_task, 900)
    await sink.stop()
    start = min(sent.values())
    return Figures(
        "pipeline, publish to outcome recorded",
        n,
        max(done_at.values()) - start,
        [(done_at[i] - sent[i]) * 1000 for i in range(n)],
    )


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """User+system CPU seconds used so far by each named group of processes."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, group in pids.items():
        total = 0
        for pid in group:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        out[name] = total / tick
    return out


def _process_groups(stack: Stack) -> dict[str, list[int]]:
    groups = {name: [p.pid] for name, p in stack.procs.items()}
    groups["bench (clients, raw relay)"] = [os.getpid()]
    if stack.broker_proc is not None:
        groups["broker"] = [stack.broker_proc.pid]
    groups["postgres"] = [
        int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _comm(d) == "postgres"
    ]
    return groups


def _comm(proc_dir: Path) -> str:
    try:
        return (proc_dir / "comm").read_text().strip()
    except OSError:
        return ""


async def stage_times(database_url: str, run: str) -> dict[str, float]:
    """When each stage finished the run, in seconds after intake received the first report."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT min(i.received_at) AS t0,
                   max(i.received_at) AS intake,
                   max(e.created_at) AS escalator_inserted,
                   max(e.decided_at) AS decided
            FROM intake.reports i JOIN escalator.escalations e USING (case_id)
            WHERE i.report_id LIKE $1
            """,
            f"{run}-%",
        )
    finally:
        await conn.close()
    assert row is not None
    t0 = row["t0"]
    return {
        "intake stored the last report": (row["intake"] - t0).total_seconds(),
        "escalator recorded the last URL": (row["escalator_inserted"] - t0).total_seconds(),
        "the last decision was recorded": (row["decided"] - t0).total_seconds(),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _row(f: Figures) -> str:
    return (
        f"{f.name:<42} {f.messages:>7} {f.throughput:>10.0f} "
        f"{f.pct(50):>9.0f} {f.pct(95):>9.0f} {f.pct(99):>9.0f}"
    )


async def run_bench(
    settings: Settings, *, reports: int, urls_per_report: int, escalators: int = 1
) -> int:
    run = f"bench-{uuid.uuid4().hex[:8]}"
    ports = {
        f"HELPLINE_{s.upper()}_PORT": str(free_port())
        for s in ("intake", "triage", "escalator", "metrics", "simulator")
    }
    extra = {
        **ports,
        "HELPLINE_PLATFORM_BASE_URL": f"http://127.0.0.1:{ports['HELPLINE_SIMULATOR_PORT']}",
        "HELPLINE_SIMULATOR_DECISION_DELAY_MS": os.environ.get(
            "HELPLINE_SIMULATOR_DECISION_DELAY_MS", "0"
        ),
        "HELPLINE_PLATFORM_RATE_PER_S": os.environ.get("HELPLINE_PLATFORM_RATE_PER_S", "100000"),
        "HELPLINE_LOG_LEVEL": "WARNING",
    }
    if "HELPLINE_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        settings = settings.model_copy(
            update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
        )
    settings = settings.model_copy(
        update={k.removeprefix("HELPLINE_").lower(): v for k, v in ports.items()}
    )
    print(
        f"helpline bench: starting the stack ({reports} reports, {urls_per_report} URLs each)",
        flush=True,
    )
    stack = await Stack.prepare(
        settings,
        log_dir=settings.data_dir / "bench-logs",
        database_name=run.replace("-", "_"),
        extra_env=extra,
    )
    try:
        await stack.start_services(replicas={"escalator": escalators})
        warm = make_reports(50, urls_per_report, f"warm-{run}")
        await pipeline(stack, warm, urls_per_report)  # connections, JIT-free warm-up
        payloads = make_reports(reports, urls_per_report, run)
        raw = await raw_relay(stack.settings, payloads)
        groups = _process_groups(stack)
        cpu_before = cpu_seconds(groups)
        piped = await pipeline(stack, payloads, urls_per_report)
        cpu_after = cpu_seconds(groups)
        stages = await stage_times(stack.settings.database_url or "", run)
        raw2 = await raw_relay(stack.settings, payloads)
        rss = {name: rss_mb(p.pid) for name, p in stack.procs.items()}
    finally:
        await asyncio.to_thread(stack.stop)
    sim = stack.settings.simulator_latency_ms
    print(
        f"\nbroker {stack.settings.kafka_bootstrap_servers}; simulator latency ~{sim:.0f} ms "
        f"per platform call; decision at submission\n"
    )
    print(f"{'':<42} {'msgs':>7} {'msgs/s':>10} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for f in (raw, piped, raw2):
        print(_row(f))
    base = statistics.mean([raw.throughput, raw2.throughput])
    print(
        f"\npipeline / raw relay throughput (raw = mean of the runs before and after): "
        f"{piped.throughput / base:.1%}"
    )
    raw_p50 = statistics.mean([raw.pct(50), raw2.pct(50)])
    print(f"pipeline p50 latency / raw p50: {piped.pct(50) / raw_p50:.1f}x")
    print("RSS after the run (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    print("Pipeline stages, seconds after intake received the first report:")
    for what, at in stages.items():
        print(f"  {what:<34} {at:6.2f}")
    print(
        f"CPU seconds during the pipeline run ({piped.seconds:.1f} s of wall time, 2 cores "
        "= 2 CPU-s per s):"
    )
    for name in sorted(cpu_after, key=lambda n: cpu_before[n] - cpu_after[n]):
        print(f"  {name:<28} {cpu_after[name] - cpu_before[name]:6.1f}")
    return 0


__all__: list[Any] = ["run_bench"]
