"""Figures per period, platform and harm type, computed from the facts the projection keeps.

Exact, as the counters are: every row was written once per event id (the inbox decides), and
durations are the stored seconds of each decided escalation, so the median and p90 are the
exact order statistics of those values, never estimated from a mean:

- median: `percentile_cont(0.5)`, the middle value, or the mean of the two middle values
  for an even count (as Python's `statistics.median`);
- p90: `percentile_disc(0.9)`, the nearest-rank 90th percentile: the value at rank
  ceil(0.9 n) of the sorted values.

Levels, as the published report counts them: cases (`metrics.cases`), URL reports (a case's
URL, `metrics.url_reports`) and escalations (distinct content, `metrics.escalations`).
A deadline breach is a URL report whose case heard the platform's decision after the
case's `decision_due_at` (triage's deadline for its urgency), or one an outcome event in
state `breached` named (`metrics.breaches`); open escalations past their deadline are
those still open (submitted or waiting for a person) with a linked case past its due time.

Casework's states, per distinct content: `breaches` (content whose deadline passed with no
decision, as the escalator announced it, by platform), `appeals` (content a practitioner
appealed), `overturned` (appeals that changed the decision; the new decision is the one
in decisions and takedowns), `closed_advice_only` (closed by a practitioner: no longer
open, no platform decision) and `manual_decisions` (decisions a practitioner recorded,
also counted with every decision). Content with a decision is content in state
`decided`, `appealed` or `appeal_decided`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from helpline_metrics import projection
from helpline_metrics.periods import Filters, Where
from helpline_shared.db import Conn
from helpline_shared.events import TAKEDOWN_DECISIONS

OPEN_STATES = ("submitted", "needs_manual")
TAKEDOWNS = sorted(TAKEDOWN_DECISIONS)
# States in which content has a platform decision.
DECIDED_STATES = tuple(sorted(projection.DECIDED_STATES))
DECIDED = "(" + ", ".join(f"'{state}'" for state in DECIDED_STATES) + ")"


def _case_where(f: Filters, alias: str = "c") -> Where:
    w = Where()
    if (b := f.bounds()) is not None:
        w.add(f"{alias}.received_at >= {{}} AND {alias}.received_at < {{}}", *b)
    if f.platform is not None:
        w.add(f"{{}} = ANY({alias}.platforms)", f.platform)
    if f.harm_type is not None:
        w.add(f"{{}} = ANY({alias}.harm_types)", f.harm_type)
    return w


def _case_period(s: str, alias: str) -> str:
    """The period time of the row's case (`metrics.cases.received_at`: when a simulated case
    was published). LEAST with the row's own time leaves real content where it was (its
    first report is never later than a case's), and puts simulated content in its year."""
    return f"(SELECT pc.received_at FROM {s}.cases pc WHERE pc.case_id = {alias}.case_id)"


def _period_and_platform(f: Filters, s: str, alias: str) -> Where:
    """The filters a URL report (`r`) and an escalation (`e`) share: period and platform."""
    w = Where()
    if (b := f.bounds()) is not None:
        period = f"LEAST({alias}.received_at, {_case_period(s, alias)})"
        w.add(f"{period} >= {{}} AND {period} < {{}}", *b)
    if f.platform is not None:
        w.add(f"{alias}.platform = {{}}", f.platform)
    return w


def _report_where(f: Filters, s: str) -> Where:
    w = _period_and_platform(f, s, "r")
    if f.harm_type is not None:
        w.add(
            f"EXISTS (SELECT 1 FROM {s}.cases hc WHERE hc.case_id = r.case_id"
            " AND {} = ANY(hc.harm_types))",
            f.harm_type,
        )
    return w


def _escalation_where(f: Filters, s: str) -> Where:
    w = _period_and_platform(f, s, "e")
    if f.harm_type is not None:
        w.add(
            f"EXISTS (SELECT 1 FROM {s}.url_reports hr JOIN {s}.cases hc USING (case_id)"
            " WHERE hr.escalation_id = e.escalation_id AND {} = ANY(hc.harm_types))",
            f.harm_type,
        )
    return w


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 3)


def _durations(rows: list[Any], count: str) -> dict[str, dict[str, Any]]:
    return {
        r["platform"]: {
            count: r["n"],
            "mean_hours": _hours(float(r["mean"])),
            "median_seconds": float(r["median"]),
            "p90_seconds": int(r["p90"]),
            "median_hours": _hours(float(r["median"])),
            "p90_hours": _hours(int(r["p90"])),
        }
        for r in rows
    }


async def case_figures(conn: Conn, f: Filters, s: str = "metrics") -> dict[str, Any]:
    """Cases, their URLs and the cases per platform, harm type, urgency and month."""
    w = _case_where(f)
    base = f"FROM {s}.cases c WHERE {w.sql}"
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, coalesce(sum(c.urls), 0) AS u {base}", *w.params
    )
    cases = int(row["n"]) if row else 0

    async def labelled(expr: str) -> dict[str, int]:
        rows = await conn.fetch(
            f"SELECT {expr} AS k, count(*) AS n {base} GROUP BY 1 ORDER BY 1", *w.params
        )
        return {r["k"]: int(r["n"]) for r in rows}

    by_platform = await labelled("unnest(c.platforms)")
    return {
        "cases": cases,
        "urls": int(row["u"]) if row else 0,
        "cases_by_platform": {
            p: {"cases": n, "share": round(n / cases, 4) if cases else None}
            for p, n in by_platform.items()
        },
        "cases_by_harm_type": await labelled("unnest(c.harm_types)"),
        "cases_by_urgency": await labelled("c.urgency"),
        "cases_by_month": await labelled("to_char(c.received_at AT TIME ZONE 'UTC', 'YYYY-MM')"),
    }


async def report_figures(conn: Conn, f: Filters, s: str = "metrics") -> dict[str, Any]:
    """URL reports per state, their takedowns, and deadline breaches per platform."""
    w = _report_where(f, s)
    rows = await conn.fetch(
        f"""SELECT r.state, count(*) AS n,
                   count(*) FILTER (WHERE r.state IN {DECIDED}
                                    AND r.decision = ANY(${len(w.params) + 1}::text[])) AS t
            FROM {s}.url_reports r WHERE {w.sql} GROUP BY 1 ORDER BY 1""",
        *w.params,
        TAKEDOWNS,
    )
    breaches = await conn.fetch(
        f"""SELECT r.platform, count(*) AS n
            FROM {s}.url_reports r LEFT JOIN {s}.cases c USING (case_id)
            WHERE ({w.sql}) AND (r.decided_at > c.decision_due_at
                   OR EXISTS (SELECT 1 FROM {s}.breaches b WHERE b.url_id = r.url_id))
            GROUP BY 1 ORDER BY 1""",
        *w.params,
    )
    return {
        "url_reports": {
            "total": sum(int(r["n"]) for r in rows),
            "by_state": {r["state"]: int(r["n"]) for r in rows},
            "takedowns": sum(int(r["t"]) for r in rows),
        },
        "breaches_by_platform": {r["platform"]: int(r["n"]) for r in breaches},
    }


async def escalation_figures(
    conn: Conn, f: Filters, s: str = "metrics", now: datetime | None = None
) -> dict[str, Any]:
    """Distinct content: states, decisions and takedowns per platform, exact median and
    p90 time to decision and to removal, and the open escalations with their age."""
    w = _escalation_where(f, s)
    base = f"FROM {s}.escalations e WHERE {w.sql}"
    tk = f"${len(w.params) + 1}::text[]"
    states = await conn.fetch(
        f"""SELECT e.platform, e.state, count(*) AS n,
                   count(*) FILTER (WHERE e.notified) AS notified
            {base} GROUP BY 1, 2 ORDER BY 1, 2""",
        *w.params,
    )
    decisions = await conn.fetch(
        f"""SELECT e.platform, e.decision, count(*) AS n {base} AND e.state IN {DECIDED}
            AND e.decision IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2""",
        *w.params,
    )
    quantiles = """count(*) AS n, avg(e.decision_seconds) AS mean,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY e.decision_seconds) AS median,
        percentile_disc(0.9) WITHIN GROUP (ORDER BY e.decision_seconds) AS p90"""
    to_decision = await conn.fetch(
        f"""SELECT e.platform, {quantiles} {base} AND e.state IN {DECIDED}
            AND e.decision_seconds IS NOT NULL GROUP BY 1 ORDER BY 1""",
        *w.params,
    )
    to_removal = await conn.fetch(
        f"""SELECT e.platform, {quantiles} {base} AND e.state IN {DECIDED}
            AND e.decision_seconds IS NOT NULL AND e.decision = ANY({tk})
            GROUP BY 1 ORDER BY 1""",
        *w.params,
        TAKEDOWNS,
    )
    n_now = f"${len(w.params) + 1}::timestamptz"
    opened = await conn.fetch(
        f"""SELECT e.platform, count(*) AS n,
                   max(extract(epoch FROM {n_now} - e.received_at)) AS oldest,
                   percentile_cont(0.5) WITHIN GROUP
                       (ORDER BY extract(epoch FROM {n_now} - e.received_at)) AS median,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM {s}.url_reports r JOIN {s}.cases c USING (case_id)
                       WHERE r.escalation_id = e.escalation_id
                         AND c.decision_due_at < {n_now})) AS past_due
            {base} AND e.state IN ('submitted', 'needs_manual') GROUP BY 1 ORDER BY 1""",
        *w.params,
        now or datetime.now().astimezone(),
    )
    by_platform: dict[str, dict[str, int]] = {}
    by_state: dict[str, int] = {}
    per_decision: dict[str, int] = {}
    decisions_by_platform: dict[str, dict[str, int]] = {}
    for r in states:
        by_platform.setdefault(r["platform"], {})[r["state"]] = int(r["n"])
        by_state[r["state"]] = by_state.get(r["state"], 0) + int(r["n"])
    for r in decisions:
        decisions_by_platform.setdefault(r["platform"], {})[r["decision"]] = int(r["n"])
        per_decision[r["decision"]] = per_decision.get(r["decision"], 0) + int(r["n"])
    casework = await conn.fetchrow(
        f"""SELECT count(*) FILTER (WHERE e.state IN ('appealed', 'appeal_decided')) AS appeals,
                   count(*) FILTER (WHERE e.state = 'appeal_decided' AND e.overturned)
                       AS overturned,
                   count(*) FILTER (WHERE e.state = 'closed') AS closed,
                   count(*) FILTER (WHERE e.state IN {DECIDED} AND e.manual) AS manual
            {base}""",
        *w.params,
    )
    takedowns = sum(n for d, n in per_decision.items() if d in TAKEDOWN_DECISIONS)
    decided = sum(by_state.get(state, 0) for state in DECIDED_STATES)
    return {
        "appeals": int(casework["appeals"]) if casework else 0,
        "overturned": int(casework["overturned"]) if casework else 0,
        "closed_advice_only": int(casework["closed"]) if casework else 0,
        "manual_decisions": int(casework["manual"]) if casework else 0,
        "urls_escalated": sum(int(r["notified"]) for r in states),
        "escalations": {
            "total": sum(by_state.values()),
            "by_state": dict(sorted(by_state.items())),
            "by_platform": by_platform,
        },
        "decisions": dict(sorted(per_decision.items())),
        "takedowns": takedowns,
        "takedown_rate": round(takedowns / decided, 4) if decided else None,
        "decisions_by_platform": decisions_by_platform,
        "takedowns_by_platform": {
            p: sum(n for d, n in ds.items() if d in TAKEDOWN_DECISIONS)
            for p, ds in decisions_by_platform.items()
        },
        "time_to_decision": _durations(to_decision, "decided"),
        "time_to_removal": _durations(to_removal, "taken_down"),
        "open_escalations": {
            r["platform"]: {
                "open": int(r["n"]),
                "past_due": int(r["past_due"]),
                "oldest_age_hours": _hours(float(r["oldest"])),
                "median_age_hours": _hours(float(r["median"])),
            }
            for r in opened
        },
    }


async def breach_figures(conn: Conn, f: Filters, s: str = "metrics") -> dict[str, Any]:
    """Distinct content whose decision deadline passed with no decision (an outcome in state
    `breached`), in total and per platform; placed in a period by its case."""
    w = Where()
    if (b := f.bounds()) is not None:
        w.add("c.received_at >= {} AND c.received_at < {}", *b)
    if f.platform is not None:
        w.add("b.platform = {}", f.platform)
    if f.harm_type is not None:
        w.add("{} = ANY(c.harm_types)", f.harm_type)
    rows = await conn.fetch(
        f"""SELECT b.platform, count(DISTINCT b.escalation_id) AS n
            FROM {s}.breaches b LEFT JOIN {s}.cases c USING (case_id)
            WHERE {w.sql} GROUP BY 1 ORDER BY 1""",
        *w.params,
    )
    total = await conn.fetchval(
        f"""SELECT count(DISTINCT b.escalation_id)
            FROM {s}.breaches b LEFT JOIN {s}.cases c USING (case_id) WHERE {w.sql}""",
        *w.params,
    )
    return {
        "breaches": {
            "total": int(total or 0),
            "by_platform": {r["platform"]: int(r["n"]) for r in rows},
        }
    }


async def figures(conn: Conn, f: Filters, s: str = "metrics") -> dict[str, Any]:
    """Every figure for the filters, at the three levels."""
    return (
        await case_figures(conn, f, s)
        | await report_figures(conn, f, s)
        | await escalation_figures(conn, f, s)
        | await breach_figures(conn, f, s)
    )
