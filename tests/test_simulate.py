"""`helpline simulate`: the generated year, its ground truth, and the year through the real
pipeline (broker, the four services, the simulator, PostgreSQL) reported exactly."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from helpline_cli.infra import free_port
from helpline_cli.simulate import fetch_report, lines, run_year
from helpline_cli.stack import Stack
from helpline_cli.year import generate, source_for
from helpline_intake.validation import validate_report
from helpline_shared.events import CaseOpenedV1, ReportSubmittedV1
from helpline_shared.settings import Settings
from helpline_triage.decision import decide, read_urls
from helpline_triage.rules import RuleSet
from tests.conftest import fresh_database
from tests.infra import Infra, dedicated_broker


def test_the_full_year_has_the_published_shape() -> None:
    year = generate(2024, 1)
    bodies = [json.loads(r) for r in year.reports]
    assert len(bodies) == year.truth.cases == 2219
    assert sum(len(b["urls"]) for b in bodies) == year.truth.urls == 4064
    assert len({u for b in bodies for u in b["urls"]}) == 4064  # all new content
    issues = Counter(t for b in bodies for t in b["issue_types"])
    assert issues["online_reputation"] == 1717
    assert issues["bullying_harassment"] == 1515
    assert issues["impersonation"] == 158
    assert 20 <= issues["school_branding_misuse"] <= 60
    assert all(b["issue_types"] for b in bodies)
    assert round(year.truth.cases_by_platform["tiktok"] / 2219, 2) == 0.76
    assert all(b["submitted_at"].startswith("2024-") for b in bodies)
    assert {b["source"] for b in bodies} == {"simulated:2024:seed1"}
    assert generate(2024, 1).reports == year.reports
    assert generate(2024, 2).reports != year.reports


def test_triage_reads_each_generated_case_as_its_ground_truth() -> None:
    """Triage's real rules give every case exactly its declared types and a platform route
    for every URL, so the ground truth is what the pipeline should count."""
    rules, now = RuleSet.load(), datetime.now(UTC)
    for raw in generate(2024, 3, 0.2).reports:
        r = ReportSubmittedV1.model_validate_json(raw)
        case = CaseOpenedV1(
            event_id=uuid.uuid4(),
            case_id=uuid.uuid4(),
            source=r.source,
            report_id=r.report_id,
            received_at=now,
            published_at=r.submitted_at,
            description=r.description,
            urls=[str(u) for u in r.urls],
            issue_types=r.issue_types,
            simulated=True,
        )
        triaged = decide(rules, case, read_urls(case), 0, now)
        assert sorted(set(triaged.harm_types)) == sorted(r.issue_types)
        assert {u.route for u in triaged.urls} == {"platform"}
        assert "unknown" not in {u.platform for u in triaged.urls}
        assert triaged.period_at == r.submitted_at
        assert triaged.decision_due_at is not None
        assert triaged.decision_due_at > now


def test_a_simulated_source_is_refused_unless_allowed() -> None:
    raw = generate(2024, 1, 0.001).reports[0]
    refused = validate_report(raw)
    assert isinstance(refused, list)
    assert [(r.loc, r.type) for r in refused] == [("source", "simulated")]
    assert "HELPLINE_ALLOW_SIMULATED_REPORTS" in refused[0].message
    assert isinstance(validate_report(raw, allow_simulated=True), ReportSubmittedV1)
    real = json.loads(raw) | {"source": "partner-web-form"}
    assert isinstance(validate_report(json.dumps(real).encode()), ReportSubmittedV1)


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        ports = {
            f"HELPLINE_{s.upper()}_PORT": str(free_port())
            for s in ("intake", "triage", "escalator", "metrics", "simulator")
        }
        env = {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATABASE_URL": await fresh_database(infra, "helpline_sim"),
            "HELPLINE_ALLOW_SIMULATED_REPORTS": "true",
            "HELPLINE_SIMULATOR_LATENCY_MS": "2",
            "HELPLINE_SIMULATOR_DECISION_DELAY_MS": "0",
            "HELPLINE_PLATFORM_RATE_PER_S": "100000",
            "HELPLINE_LOG_LEVEL": "WARNING",
            **ports,
        }
        settings = Settings(**{k.removeprefix("HELPLINE_").lower(): v for k, v in env.items()})
        env["HELPLINE_PLATFORM_BASE_URL"] = f"http://127.0.0.1:{ports['HELPLINE_SIMULATOR_PORT']}"
        s = await Stack.prepare(settings, log_dir=tmp_dir / "simulate-logs", extra_env=env)
        try:
            await s.start_services()
            yield s
        finally:
            await asyncio.to_thread(s.stop)


async def test_a_simulated_year_is_reported_as_its_ground_truth(stack: Stack) -> None:
    year = generate(2024, 7, 0.05)
    truth = year.truth
    real = {
        "schema_version": 1,
        "source": "partner-web-form",
        "report_id": f"real-{uuid.uuid4().hex[:8]}",
        "reporter": {"name": "A Teacher", "email": "a.teacher@school.example"},
        "description": "Please review the content at the links in this report.",
        "urls": [f"https://www.tiktok.com/@real/video/{uuid.uuid4().int % 10**18}"],
        "issue_types": ["impersonation"],
    }
    run = await run_year(stack, year, extra=[json.dumps(real).encode()], extra_urls=1)
    report = run.report

    assert report["cases"] == truth.cases > 100
    assert {p["platform"]: p["cases"] for p in report["platforms"]} == dict(truth.cases_by_platform)
    assert report["platforms"][0]["platform"] == "tiktok"
    assert report["urls_escalated"] == report["url_reports"] == truth.urls
    assert {i["issue_type"]: i["cases"] for i in report["issue_types"]} == dict(
        truth.cases_by_issue
    )
    assert report["decided"] == truth.urls  # every URL has a platform decision
    assert report["takedown_rate"] == round(report["takedowns"] / truth.urls, 4)
    assert 0.8 < report["takedown_rate"] < 1.0
    out = lines(report, truth, run.seconds)
    assert out[0].split() == ["cases", f"{truth.cases:,}", "(ground", "truth", f"{truth.cases:,})"]

    # The real case, in the same run, is in the year it was received.
    this_year = datetime.now(UTC).year
    current = await fetch_report(stack, this_year)
    assert (current["cases"], current["urls_escalated"]) == (1, 1)
    assert [i["issue_type"] for i in current["issue_types"]] == ["impersonation"]

    # Intake received the simulated reports now; only their period is 2024, and their
    # time to removal is the pipeline's, not a year's.
    db = await asyncpg.connect(stack.settings.database_url)
    try:
        rows = await db.fetch(
            """SELECT i.received_at, c.received_at AS period
               FROM intake.reports i JOIN metrics.cases c USING (case_id)
               WHERE i.source = $1""",
            source_for(2024, 7),
        )
        slowest = await db.fetchval("SELECT max(decision_seconds) FROM metrics.escalations")
    finally:
        await db.close()
    assert len(rows) == truth.cases
    assert {r["received_at"].astimezone(UTC).date() for r in rows} <= {
        datetime.now(UTC).date(),
        (datetime.now(UTC) - timedelta(seconds=run.seconds + 60)).date(),  # past midnight
    }
    assert {r["period"].astimezone(UTC).year for r in rows} == {2024}
    assert slowest is not None
    assert slowest < 600
