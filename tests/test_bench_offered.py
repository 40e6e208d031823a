"""`helpline bench --rate R --duration S` and `--profile`: the open-loop load through the
real stack (its own Tansu broker, a fresh database on the session's PostgreSQL, every
service as a process), the figures it derives, and the profile summary. Nothing here
depends on how fast the machine is."""

from __future__ import annotations

import io
import math
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from helpline_cli.bench.offered import OfferedRun, offered_load, percentile
from helpline_cli.bench.profile import hottest
from helpline_cli.bench.rates import RateResult, latency_table, stage_table
from helpline_cli.bench.run import bench_stack
from helpline_cli.main import _parser
from helpline_shared.settings import Settings
from tests.infra import Infra


def test_the_flags_reach_the_bench() -> None:
    args = _parser().parse_args(["bench", "--rate", "50,200", "--duration", "3"])
    assert (args.rate, args.duration, args.max_rate, args.profile) == ("50,200", 3.0, False, None)
    assert _parser().parse_args(["bench", "--max-rate"]).max_rate is True
    assert _parser().parse_args(["bench", "--rate", "5", "--profile", "p"]).profile == "p"


def test_percentiles_count_an_unfinished_report_as_never() -> None:
    assert percentile([], 50) != percentile([], 50)  # nan
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    run = OfferedRun(rate=10, duration_s=1, offered=4, achieved_rate=10, completed_rate=10)
    run.latency_ms = {0: 10.0, 1: 20.0, 3: 40.0}  # report 2 never finished
    assert run.unfinished == 1
    assert math.isinf(run.p(99))
    assert run.p(0) == 10.0
    assert run.second_half() == [40.0]
    assert math.isinf(run.p(99, second_half=True))  # report 2 is in the second half


def test_the_profile_summary_reads_collapsed_stacks(tmp_path: Path) -> None:
    stacks = tmp_path / "intake.txt"
    stacks.write_text(
        "main (a.py:1);work (a.py:5);parse (b.py:2) 6\n"
        "main (a.py:1);work (a.py:5) 3\n"
        "main (a.py:1);idle (a.py:9) 1\n"
    )
    hot = hottest(stacks)
    assert [h.frame for h in hot] == ["parse (b.py:2)", "work (a.py:5)", "idle (a.py:9)"]
    assert hot[0].self_share == pytest.approx(0.6)
    assert hot[1].total_share == pytest.approx(0.9)  # itself and what it called
    empty = tmp_path / "none.txt"
    empty.write_text("")
    assert hottest(empty) == []


async def test_an_offered_load_is_measured_from_its_schedule_to_the_last_outcome(
    infra: Infra, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bench's own embedded broker, so that no other test's topics are read.
    monkeypatch.delenv("HELPLINE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    stack = await bench_stack(
        Settings(data_dir=tmp_dir / "offered"),
        f"offered_test_{uuid.uuid4().hex[:8]}",
        {"HELPLINE_DATABASE_URL": infra.database_url},
    )
    try:
        await stack.start_services()
        run = await offered_load(stack.settings, rate=20, duration_s=2, urls_per_report=2)
    finally:
        stack.stop()
    assert run.offered == 40
    assert run.unfinished == 0, "every report reaches its outcomes"
    assert 0 < run.p(50) <= run.p(95) <= run.p(99) <= run.p(100) < math.inf
    assert run.achieved_rate > 0
    assert run.completed_rate > 0
    # Every stage of every report was found in the services' own records, and the stages
    # add up to the report's latency (each measured on the same wall clock).
    assert all(len(v) == run.offered for v in run.stages_ms.values()), run.stages_ms.keys()
    for i, total in enumerate(sorted(run.latency_ms.values())):
        assert total > 0, i
    sums = sorted(sum(v[i] for v in run.stages_ms.values()) for i in range(run.offered))
    assert sums == pytest.approx(sorted(run.latency_ms.values()), rel=1e-6, abs=1e-3)
    out = io.StringIO()
    console = Console(file=out, width=200)
    result = RateResult(run, 1.0, {"intake": 1.0}, {})
    console.print(latency_table([result]))
    console.print(stage_table(result))
    text = out.getvalue()
    for word in ("p50", "p99", "received by intake", "decision recorded", "outcome read"):
        assert word in text
