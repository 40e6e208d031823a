"""The annual report as JSON, CSV or a printable HTML page (inline CSS, nothing external)."""

from __future__ import annotations

import csv
import io
import json
from html import escape
from typing import Any

FORMATS = ("json", "csv", "html")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "html": "text/html"}


def render(report: dict[str, Any], fmt: str) -> str:
    """`report` (from :func:`helpline_metrics.report.annual_report`) in `fmt`."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "html":
        return _html(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def _pct(share: float | None, places: int = 1) -> str:
    return "-" if share is None else f"{share * 100:.{places}f}%"


def _hours(hours: float | None) -> str:
    if hours is None:
        return "-"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _csv(r: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["section", "name", "value", "share", "median_hours", "p90_hours"])
    w.writerow(["headline", "year", r["year"], "", "", ""])
    w.writerow(["headline", "cases", r["cases"], "", "", ""])
    w.writerow(["headline", "urls_escalated", r["urls_escalated"], "", "", ""])
    w.writerow(["headline", "url_reports", r["url_reports"], "", "", ""])
    w.writerow(["headline", "takedowns", r["takedowns"], r["takedown_rate"] or "", "", ""])
    for p in r["platforms"]:
        w.writerow(["platform_share", p["platform"], p["cases"], p["share"], "", ""])
    for i in r["issue_types"]:
        w.writerow(["issue_type", i["issue_type"], i["cases"], i["share"], "", ""])
    for t in r["time_to_removal"]:
        times = [t["median_hours"], t["p90_hours"]]
        w.writerow(["time_to_removal", t["platform"], t["taken_down"], "", *times])
    c = r["casework"]
    for name in ("deadline_breaches", "appeals", "overturned", "closed_advice_only"):
        w.writerow(["casework", name, c[name], "", "", ""])
    w.writerow(["casework", "manual_decisions", c["manual_decisions"], "", "", ""])
    for b in c["deadline_breaches_by_platform"]:
        w.writerow(["deadline_breaches", b["platform"], b["breaches"], "", "", ""])
    return out.getvalue()


_CSS = """
body { font-family: Georgia, 'Times New Roman', serif; color: #1a1a1a; max-width: 46rem;
       margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #999; padding-bottom: .2rem; }
.headline { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1.5rem 0; }
.headline div { flex: 1 1 9rem; border: 1px solid #ccc; padding: .6rem .8rem; }
.headline b { display: block; font-size: 1.6rem; }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.method { font-size: .9rem; color: #333; }
@media print { body { margin: 0; max-width: none; font-size: 11pt; }
  h2 { page-break-after: avoid; } table, .headline { page-break-inside: avoid; } }
"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    def cell(tag: str, i: int, v: str) -> str:
        cls = ' class="n"' if i > 0 else ""
        return f"<{tag}{cls}>{escape(v)}</{tag}>"

    th = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _html(r: dict[str, Any]) -> str:
    year = escape(str(r["year"]))
    headline = "".join(
        f"<div><b>{escape(v)}</b>{escape(k)}</div>"
        for k, v in [
            ("cases", f"{r['cases']:,}"),
            ("URLs escalated", f"{r['urls_escalated']:,}"),
            ("taken down", _pct(r["takedown_rate"])),
        ]
    )
    platforms = _table(
        ["Platform", "Cases", "Share of cases"],
        [[p["name"], f"{p['cases']:,}", _pct(p["share"])] for p in r["platforms"]],
    )
    issues = _table(
        ["Issue type", "Cases", "Share of cases"],
        [[i["name"], f"{i['cases']:,}", _pct(i["share"])] for i in r["issue_types"]],
    )
    removal = _table(
        ["Platform", "Taken down", "Median", "90th percentile"],
        [
            [t["name"], f"{t['taken_down']:,}", _hours(t["median_hours"]), _hours(t["p90_hours"])]
            for t in r["time_to_removal"]
        ],
    )
    c = r["casework"]
    breaches = _table(
        ["Platform", "Deadline breaches"],
        [[b["name"], f"{b['breaches']:,}"] for b in c["deadline_breaches_by_platform"]],
    )
    method = "".join(f"<p>{escape(m)}</p>" for m in r["method"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Annual report {year}</title><style>{_CSS}</style></head>
<body><h1>Annual report {year}</h1>
<p>Cases received from 1 January to 31 December {year}.</p>
<section class="headline">{headline}</section>
<p>{r["takedowns"]:,} of the {r["decided"]:,} escalated URLs with a platform decision were
taken down; {r["url_reports"]:,} URLs were reported in all.</p>
<h2>Cases by platform</h2>{platforms}
<h2>Cases by issue type</h2>{issues}
<h2>Time to removal</h2>{removal}
<h2>Deadlines and appeals</h2>
<p>{c["deadline_breaches"]:,} escalated URLs passed their decision deadline; {c["appeals"]:,}
decisions were appealed and {c["overturned"]:,} overturned; practitioners recorded
{c["manual_decisions"]:,} decisions and closed {c["closed_advice_only"]:,} cases as advice
only.</p>{breaches}
<h2>Method</h2><section class="method">{method}</section>
</body></html>
"""
