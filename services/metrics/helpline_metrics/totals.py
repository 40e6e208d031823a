"""Reading the running totals: the JSON document of `GET /v1/totals`.

Without filters the fields of the first version come from the all-time counters
(:mod:`helpline_metrics.projection`); with a filter (period, platform, harm type) every
field is computed from the kept facts (:mod:`helpline_metrics.figures`), except the
rejected reports, which belong to no case and stay all-time. The figures added in
issue 9 come from the facts either way.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from helpline_metrics.figures import DECIDED_STATES, figures
from helpline_metrics.periods import Filters
from helpline_shared.db import Conn
from helpline_shared.events import utcnow


async def read_counters(conn: Conn) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in await conn.fetch("SELECT name, label, value FROM metrics.counters"):
        if r["value"] != 0:
            out[r["name"]][r["label"]] = int(r["value"])
    return out


def _one(c: dict[str, dict[str, int]], name: str) -> int:
    return c.get(name, {}).get("", 0)


async def totals(conn: Conn, filters: Filters | None = None) -> dict[str, Any]:
    """Every total, with the takedown rate and per-platform case shares derived from them.

    Distinct content and URL reports are counted apart, as the published report does:
    `urls` and `url_reports` count each URL of each case (a URL reported by three cases
    counts three); `escalations`, `urls_escalated`, `decisions` and `takedowns` count
    distinct content (one escalation per content and platform, from its first outcome).
    urls_escalated = distinct content a platform was notified of (submitted or decided).
    takedown_rate = distinct content whose decision took it down (removed, disabled,
    already gone) / distinct content with a platform decision; null until there is one.
    time_to_decision_by_platform: mean time from intake receiving the first report of the
    content to the platform's decision, over the decided content of each platform.

    Added: `filters`, `cases_by_month`, `decisions_by_platform`, `takedowns_by_platform`,
    `time_to_decision` and `time_to_removal` (per platform: count, exact median and p90 in
    seconds and hours), `breaches_by_platform`, `open_escalations` (per platform: open,
    past_due, oldest and median age in hours); see :mod:`helpline_metrics.figures`.

    Added for casework (distinct content): `breaches` (total and by platform: deadlines
    passed with no decision), `appeals`, `overturned`, `closed_advice_only` (closed by a
    practitioner, not a decision) and `manual_decisions` (decisions a practitioner
    recorded, also in `decisions`). Content under appeal keeps its decision; an overturned
    appeal's decision replaces it in `decisions` and `takedowns`.
    """
    f = filters or Filters()
    facts = await figures(conn, f)
    c = await read_counters(conn)
    cases = _one(c, "cases_total")
    decided = sum(c.get("escalations_by_state", {}).get(s, 0) for s in DECIDED_STATES)
    takedowns = _one(c, "takedowns")
    by_platform: dict[str, dict[str, int]] = defaultdict(dict)
    for label, n in c.get("escalations_by_platform_state", {}).items():
        platform, state = label.rsplit(":", 1)
        by_platform[platform][state] = n
    waited = c.get("decision_seconds", {})
    decided_by_platform = {
        platform: n
        for platform, states in sorted(by_platform.items())
        if (n := sum(states.get(s, 0) for s in DECIDED_STATES))
    }
    time_to_decision = {
        platform: {"decided": n, "mean_hours": round(waited.get(platform, 0) / n / 3600, 3)}
        for platform, n in decided_by_platform.items()
    }
    doc: dict[str, Any] = {
        "as_of": utcnow().isoformat(),
        "filters": f.as_dict(),
        "cases": cases,
        "urls": _one(c, "urls_total"),
        "urls_escalated": _one(c, "urls_escalated"),
        "url_reports": {
            "total": _one(c, "urls_total"),
            "by_state": dict(sorted(c.get("url_reports_by_state", {}).items())),
            "takedowns": _one(c, "url_report_takedowns"),
        },
        "reports_rejected": _one(c, "reports_rejected_total"),
        "reports_rejected_by_type": dict(sorted(c.get("reports_rejected_by_type", {}).items())),
        "escalations": {
            "total": _one(c, "escalations_total"),
            "by_state": dict(sorted(c.get("escalations_by_state", {}).items())),
            "by_platform": {p: dict(sorted(s.items())) for p, s in sorted(by_platform.items())},
        },
        "decisions": dict(sorted(c.get("decisions", {}).items())),
        "takedowns": takedowns,
        "takedown_rate": round(takedowns / decided, 4) if decided else None,
        "cases_by_platform": {
            p: {"cases": n, "share": round(n / cases, 4) if cases else None}
            for p, n in sorted(c.get("cases_by_platform", {}).items())
        },
        "cases_by_harm_type": dict(sorted(c.get("cases_by_harm_type", {}).items())),
        "time_to_decision_by_platform": time_to_decision,
        "cases_by_urgency": dict(sorted(c.get("cases_by_urgency", {}).items())),
    }
    added = {k: v for k, v in facts.items() if k not in doc}
    if f.empty:
        return doc | added
    replaced = {k: v for k, v in facts.items() if k in doc}
    by_platform = facts["time_to_decision"]
    replaced["time_to_decision_by_platform"] = {
        p: {"decided": d["decided"], "mean_hours": d["mean_hours"]} for p, d in by_platform.items()
    }
    return doc | replaced | added
