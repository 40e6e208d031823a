"""Metrics figures on real PostgreSQL: exact median and p90 against values this test computes
itself, period / platform / harm-type filters, deadline breaches, replay changing nothing,
and the annual report's figures for a small known set of events."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpline_metrics import projection
from helpline_metrics.figures import escalation_figures, figures
from helpline_metrics.periods import FilterError, Filters, period_bounds
from helpline_metrics.report import annual_report
from helpline_metrics.report_render import render
from helpline_metrics.totals import totals
from helpline_shared.events import CaseTriagedV1, EscalationOutcomeV1, TriagedUrl, derive_id
from tests.conftest import fresh_database
from tests.infra import Infra


@pytest.fixture
async def conn(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(await fresh_database(infra, "helpline_metrics_fig"))
    try:
        yield c
    finally:
        await c.close()


def nearest_rank(values: list[float], p: float) -> float:
    """The value at rank ceil(p * n) of the sorted values (1-based)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def case(
    received: datetime,
    platforms: list[str],
    harms: list[str],
    *,
    urgency: str = "normal",
    due: timedelta | None = None,
) -> tuple[CaseTriagedV1, list[TriagedUrl]]:
    case_id = uuid.uuid4()
    urls = [
        TriagedUrl(
            url_id=uuid.uuid4(),
            url=f"https://{p}.example/{case_id}",
            normalized_url=f"https://{p}.example/{case_id}",
            platform=p,
            route="platform",
        )
        for p in platforms
    ]
    event = CaseTriagedV1(
        event_id=derive_id("t", case_id),
        case_id=case_id,
        received_at=received,
        triaged_at=received,
        harm_types=harms,  # type: ignore[arg-type]
        urgency=urgency,  # type: ignore[arg-type]
        route="platform",
        rules_fired=[],
        urls=urls,
        decision_due_at=received + due if due else None,
    )
    return event, urls


def outcome(
    c: CaseTriagedV1, u: TriagedUrl, state: str, after: timedelta, decision: str | None = None
) -> EscalationOutcomeV1:
    return EscalationOutcomeV1(
        event_id=derive_id("escalation.outcome", u.url_id, state),
        case_id=c.case_id,
        escalation_id=u.url_id,
        url_id=u.url_id,
        platform=u.platform,
        url=u.url,
        state=state,  # type: ignore[arg-type]
        decision=decision,  # type: ignore[arg-type]
        attempts=1,
        received_at=c.received_at,
        first_received_at=c.received_at,
        occurred_at=c.received_at + after,
    )


def decided_case(
    received: datetime, platform: str, hours: float, decision: str, harms: list[str]
) -> list[Any]:
    c, urls = case(received, [platform], harms, due=timedelta(hours=24))
    return [
        c,
        outcome(c, urls[0], "submitted", timedelta(minutes=5)),
        outcome(c, urls[0], "decided", timedelta(hours=hours), decision),
    ]


async def fold(conn: asyncpg.Connection, events: list[Any], batch: int = 7) -> None:
    for i in range(0, len(events), batch):
        async with conn.transaction():
            await projection.apply(conn, events[i : i + batch])


def without_clock(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("as_of", "open_escalations")}


async def test_median_and_p90_equal_those_computed_independently(
    conn: asyncpg.Connection,
) -> None:
    rng = random.Random(11)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    events: list[Any] = []
    seconds: dict[str, list[int]] = {"tiktok": [], "x": []}
    removed: dict[str, list[int]] = {"tiktok": [], "x": []}
    for n in range(61):  # odd and even counts per platform
        platform = "tiktok" if n % 3 else "x"
        hours = rng.randint(1, 400) * 0.25  # whole seconds, many ties possible
        decision = "removed" if rng.random() < 0.8 else "no_violation"
        events += decided_case(start + timedelta(hours=n), platform, hours, decision, ["hate"])
        seconds[platform].append(round(hours * 3600))
        if decision == "removed":
            removed[platform].append(round(hours * 3600))
    await fold(conn, events)
    t = await totals(conn)
    for platform in ("tiktok", "x"):
        got = t["time_to_decision"][platform]
        assert got["decided"] == len(seconds[platform])
        assert got["median_seconds"] == statistics.median(seconds[platform])
        assert got["p90_seconds"] == nearest_rank(seconds[platform], 0.9)
        gone = t["time_to_removal"][platform]
        assert gone["taken_down"] == len(removed[platform])
        assert gone["median_seconds"] == statistics.median(removed[platform])
        assert gone["p90_seconds"] == nearest_rank(removed[platform], 0.9)
        assert gone["p90_hours"] == round(nearest_rank(removed[platform], 0.9) / 3600, 3)


def a_year(seed: int) -> list[Any]:
    """Cases across 2023-12 .. 2024-03 on a few platforms, with outcomes."""
    rng = random.Random(seed)
    events: list[Any] = []
    for n in range(48):
        received = datetime(2023, 12, 1, tzinfo=UTC) + timedelta(days=n * 2.5, hours=n)
        platforms = rng.choice([["tiktok"], ["tiktok", "x"], ["youtube"], ["x"]])
        harms = rng.sample(["bullying_harassment", "impersonation", "online_reputation"], 2)
        c, urls = case(received, platforms, harms, due=timedelta(hours=24))
        events.append(c)
        for u in urls:
            events.append(outcome(c, u, "submitted", timedelta(minutes=3)))
            hours = rng.choice([2, 10, 30, 50])  # 30 and 50 are past the 24 h deadline
            events.append(outcome(c, u, "decided", timedelta(hours=hours), "removed"))
    return events


async def test_replaying_the_same_events_twice_changes_no_figure(
    conn: asyncpg.Connection,
) -> None:
    events = a_year(3)
    await fold(conn, events)
    filters = [Filters(), Filters("2024"), Filters("2024-02", "tiktok"), Filters(None, "x")]
    before = [without_clock(await totals(conn, f)) for f in filters]
    shuffled = events[:]
    random.Random(5).shuffle(shuffled)
    await fold(conn, shuffled, 13)
    await fold(conn, events, 1000)
    assert [without_clock(await totals(conn, f)) for f in filters] == before
    assert before[0]["cases"] == 48


async def test_period_platform_and_harm_filters(conn: asyncpg.Connection) -> None:
    events = a_year(4)
    await fold(conn, events)
    cases = [e for e in events if isinstance(e, CaseTriagedV1)]
    for period in ("2023", "2024", "2023-12", "2024-01", "2024-02", "2024-03", "2025"):
        start, end = period_bounds(period)
        mine = [c for c in cases if start <= c.received_at < end]
        t = await totals(conn, Filters(period))
        assert t["cases"] == len(mine), period
        assert t["urls"] == sum(len(c.urls) for c in mine)
        assert t["url_reports"]["total"] == sum(len(c.urls) for c in mine)
        assert sum(t["cases_by_month"].values()) == len(mine)
    t = await totals(conn, Filters("2024", "tiktok", "impersonation"))
    mine = [
        c
        for c in cases
        if c.received_at.year == 2024
        and "impersonation" in c.harm_types
        and any(u.platform == "tiktok" for u in c.urls)
    ]
    assert t["cases"] == len(mine)
    assert t["escalations"]["by_platform"] == {"tiktok": {"decided": len(mine)}}
    assert t["filters"] == {"period": "2024", "platform": "tiktok", "harm_type": "impersonation"}
    # Breaches: decided after the case's decision_due_at (24 h), counted per URL report.
    late: dict[str, int] = {}
    decisions = [e for e in events if isinstance(e, EscalationOutcomeV1) and e.state == "decided"]
    for e in decisions:
        if e.occurred_at - e.received_at > timedelta(hours=24):
            late[e.platform] = late.get(e.platform, 0) + 1
    assert late  # the scenario has late decisions
    assert (await totals(conn))["breaches_by_platform"] == late
    for bad in ("24", "2024-13", "2024-3"):
        with pytest.raises(FilterError):
            Filters(bad).bounds()


async def test_the_counters_and_the_facts_agree(conn: asyncpg.Connection) -> None:
    """Unfiltered fields come from the all-time counters, filtered ones from the facts:
    over the same events both give the same numbers."""
    events = a_year(6)
    await fold(conn, events)
    counted = await totals(conn)
    facts = await figures(conn, Filters())
    for key in (
        "cases",
        "urls",
        "urls_escalated",
        "url_reports",
        "escalations",
        "decisions",
        "takedowns",
        "takedown_rate",
        "cases_by_platform",
        "cases_by_harm_type",
        "cases_by_urgency",
    ):
        assert facts[key] == counted[key], key
    for platform, d in counted["time_to_decision_by_platform"].items():
        assert facts["time_to_decision"][platform]["mean_hours"] == d["mean_hours"]
    halves = [await totals(conn, Filters(p)) for p in ("2023", "2024")]
    assert sum(h["cases"] for h in halves) == counted["cases"]


async def test_open_escalations_and_their_age(conn: asyncpg.Connection) -> None:
    received = datetime(2024, 6, 1, tzinfo=UTC)
    c1, u1 = case(received, ["tiktok"], ["hate"], due=timedelta(hours=24))
    c2, u2 = case(received + timedelta(hours=10), ["tiktok"], ["hate"], due=timedelta(days=9))
    await fold(
        conn,
        [
            c1,
            c2,
            outcome(c1, u1[0], "submitted", timedelta(0)),
            outcome(c2, u2[0], "submitted", timedelta(0)),
        ],
    )
    now = received + timedelta(days=2)
    got = (await escalation_figures(conn, Filters(), now=now))["open_escalations"]
    assert got == {
        "tiktok": {
            "open": 2,
            "past_due": 1,
            "oldest_age_hours": 48.0,
            "median_age_hours": statistics.median([48.0, 38.0]),
        }
    }


async def test_the_annual_report_for_known_events(conn: asyncpg.Connection) -> None:
    jan = datetime(2024, 1, 10, tzinfo=UTC)
    events: list[Any] = []
    # Four 2024 cases: TikTok in three, X in two, YouTube in one; one 2023 case left out.
    events += decided_case(jan, "x", 5, "removed", ["bullying_harassment"])
    events += decided_case(jan, "x", 7, "no_violation", ["impersonation"])
    events += decided_case(jan, "tiktok", 1, "removed", ["bullying_harassment", "hate"])
    events += decided_case(jan, "tiktok", 3, "disabled", ["bullying_harassment"])
    events += decided_case(datetime(2023, 12, 31, tzinfo=UTC), "tiktok", 9, "removed", ["hate"])
    both, urls = case(jan, ["tiktok", "youtube"], ["online_reputation"])
    events += [both, outcome(both, urls[0], "decided", timedelta(hours=2), "already_gone")]
    events += [outcome(both, urls[1], "submitted", timedelta(hours=1))]
    await fold(conn, events + events[::2])
    r = await annual_report(conn, 2024)
    assert r["cases"] == 5
    assert [(p["platform"], p["cases"], p["share"]) for p in r["platforms"]] == [
        ("tiktok", 3, 0.6),
        ("x", 2, 0.4),
        ("youtube", 1, 0.2),
    ]
    assert r["urls_escalated"] == 6  # every URL reached its platform
    assert r["url_reports"] == 6
    assert (r["decided"], r["takedowns"], r["takedown_rate"]) == (5, 4, 0.8)
    assert [(i["issue_type"], i["cases"]) for i in r["issue_types"]] == [
        ("bullying_harassment", 3),
        ("hate", 1),
        ("impersonation", 1),
        ("online_reputation", 1),
    ]
    removal = {t["platform"]: t for t in r["time_to_removal"]}
    assert removal["tiktok"]["median_hours"] == statistics.median([1, 3, 2])
    assert removal["tiktok"]["p90_hours"] == 3
    assert removal["x"]["taken_down"] == 1
    assert [t["platform"] for t in r["time_to_removal"]] == ["tiktok", "x"]
    html = render(r, "html")
    assert "@media print" in html
    assert "http" not in html.split("<body>")[1].lower()  # nothing external
    assert "<td>TikTok</td>" in html
    assert "60.0%" in html
    csv_text = render(r, "csv")
    assert "platform_share,tiktok,3,0.6,," in csv_text.splitlines()


async def test_breached_outcomes_count_once_per_url_report(conn: asyncpg.Connection) -> None:
    """The escalator does not send `breached` yet; when it does (state `breached` on the
    outcomes topic), each URL report it names counts once as a breach, moving no state."""
    received = datetime(2024, 4, 2, tzinfo=UTC)
    c, urls = case(received, ["tiktok", "x"], ["hate"], due=timedelta(days=30))
    submitted = [outcome(c, u, "submitted", timedelta(minutes=1)) for u in urls]
    breached = outcome(c, urls[0], "submitted", timedelta(hours=30)).model_copy(
        update={"state": "breached", "event_id": derive_id("breached", urls[0].url_id)}
    )
    await fold(conn, [c, *submitted, breached, breached])
    await fold(conn, [breached])
    t = await totals(conn)
    assert t["breaches_by_platform"] == {"tiktok": 1}
    assert t["escalations"]["by_state"] == {"submitted": 2}


def helpline(env: dict[str, str], *args: str) -> bytes:
    """Runs the `helpline` command of this environment; its standard output."""
    command = str(Path(sys.executable).with_name("helpline"))
    done = subprocess.run([command, *args], env=env, capture_output=True, check=True, timeout=60)
    return done.stdout


async def test_the_report_command_prints_what_the_endpoint_computes(
    infra: Infra, tmp_path: Any
) -> None:
    url = await fresh_database(infra, "helpline_report_cli")
    conn = await asyncpg.connect(url)
    try:
        events: list[Any] = []
        for n, platform in enumerate(["tiktok", "tiktok", "x"]):
            when = datetime(2024, 3, 1 + n, tzinfo=UTC)
            events += decided_case(when, platform, 2 + n, "removed", ["impersonation"])
        await fold(conn, events)
        expected = await annual_report(conn, 2024)
    finally:
        await conn.close()
    env = {**os.environ, "HELPLINE_DATABASE_URL": url}
    out = await asyncio.to_thread(helpline, env, "report", "--year", "2024", "--format", "json")
    assert json.loads(out) == expected
    page = tmp_path / "report.html"
    await asyncio.to_thread(helpline, env, "report", "--year", "2024", "--output", str(page))
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert '<td>TikTok</td><td class="n">2</td>' in html
