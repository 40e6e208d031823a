"""`helpline bench`: start a stack, run baseline and pipeline, print the figures."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import uuid

from helpline_cli.bench.machine import CpuMeter, rss_mb, stage_times
from helpline_cli.bench.minimal import minimal_loop
from helpline_cli.bench.pipeline import pipeline
from helpline_cli.bench.relay import raw_relay
from helpline_cli.bench.workload import Figures, make_reports
from helpline_cli.infra import free_port
from helpline_cli.stack import Stack
from helpline_shared.settings import Settings


def _row(f: Figures) -> str:
    return (
        f"{f.name:<42} {f.messages:>7} {f.throughput:>10.0f} "
        f"{f.pct(50):>9.0f} {f.pct(95):>9.0f} {f.pct(99):>9.0f}"
    )


async def bench_stack(
    settings: Settings, run: str, extra_env: dict[str, str] | None = None
) -> Stack:
    """A stack on free ports with its own database, the platform rate limit out of the
    way and decisions at submission, unless the environment says otherwise."""
    ports = {
        f"HELPLINE_{s.upper()}_PORT": str(free_port())
        for s in ("intake", "triage", "escalator", "metrics", "casework", "notify", "simulator")
    }
    smtp_port = free_port()
    extra = {
        **ports,
        "HELPLINE_PLATFORM_BASE_URL": f"http://127.0.0.1:{ports['HELPLINE_SIMULATOR_PORT']}",
        "HELPLINE_SIMULATOR_DECISION_DELAY_MS": os.environ.get(
            "HELPLINE_SIMULATOR_DECISION_DELAY_MS", "0"
        ),
        "HELPLINE_PLATFORM_RATE_PER_S": os.environ.get("HELPLINE_PLATFORM_RATE_PER_S", "100000"),
        "HELPLINE_LOG_LEVEL": "WARNING",
        # The reporters' emails go to a catcher of the bench's own, as in `helpline dev`.
        "HELPLINE_SMTP_HOST": "127.0.0.1",
        "HELPLINE_SMTP_PORT": str(smtp_port),
        **(extra_env or {}),
    }
    if "HELPLINE_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        settings = settings.model_copy(
            update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
        )
    settings = settings.model_copy(
        update={k.removeprefix("HELPLINE_").lower(): v for k, v in ports.items()}
    )
    stack = await Stack.prepare(
        settings,
        log_dir=settings.data_dir / "bench-logs",
        database_name=run.replace("-", "_"),
        extra_env=extra,
    )
    mail_dir = settings.data_dir / "bench-mail" / run
    stack.scratch.append(mail_dir)
    stack.aux["mail catcher"] = subprocess.Popen(  # noqa: S603, ASYNC220 (startup, once)
        [
            sys.executable,
            "-m",
            "helpline_cli.main",
            "mail",
            "catch",
            "--port",
            str(smtp_port),
            "--dir",
            str(mail_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return stack


async def run_bench(
    settings: Settings, *, reports: int, urls_per_report: int, escalators: int = 1
) -> int:
    run = f"bench-{uuid.uuid4().hex[:8]}"
    print(
        f"helpline bench: starting the stack ({reports} reports, {urls_per_report} URLs each)",
        flush=True,
    )
    stack = await bench_stack(settings, run)
    try:
        await stack.start_services(replicas={"escalator": escalators})
        warm = make_reports(50, urls_per_report, f"warm-{run}")
        await pipeline(stack, warm, urls_per_report)  # connections, JIT-free warm-up
        payloads = make_reports(reports, urls_per_report, run)
        raw = await raw_relay(stack.settings, payloads)
        meter = CpuMeter(stack)
        meter.start()
        piped = await pipeline(stack, payloads, urls_per_report)
        cpu = meter.read()
        stages = await stage_times(stack.settings.database_url or "", run)
        platforms = {"platform_base_url": stack.url("simulator")}
        minimal = await minimal_loop(stack.settings.model_copy(update=platforms), payloads)
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
    for f in (raw, piped, minimal, raw2):
        print(_row(f))
    base = statistics.mean([raw.throughput, raw2.throughput])
    print(
        f"\npipeline / raw relay throughput (raw = mean of the runs before and after): "
        f"{piped.throughput / base:.1%}"
    )
    print(
        "pipeline / minimal loop throughput (the same DB row and platform call per URL, "
        f"without the design): {piped.throughput / minimal.throughput:.1%}"
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
    for name in sorted(cpu, key=lambda n: -cpu[n]):
        print(f"  {name:<28} {cpu[name]:6.1f}")
    return 0
