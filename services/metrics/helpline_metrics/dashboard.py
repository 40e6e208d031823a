"""`GET /dashboard`: the live figures as one page a person reads on a laptop.

Headline numbers (cases, URLs escalated, URL reports, takedown rate, open escalations past
their deadline) and five charts (cases per month, platform share, outcomes per platform,
time to removal per platform, open escalations past deadline), all from the same document
as `GET /v1/totals` (:func:`helpline_metrics.totals.totals`), drawn server-side as SVG
(:mod:`helpline_metrics.charts`): no script, no external resource, and every chart's data
also given as a table. The page reloads itself every `REFRESH_S` seconds.
Each headline number carries its raw value in `data-value`, named by `data-figure`.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# definition time, and their dependencies name local objects.

from html import escape
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from starlette.responses import HTMLResponse, Response

from helpline_metrics.charts import hbars, stacked, vbars
from helpline_metrics.totals import totals
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Database
from helpline_shared.webapi import AUTH_RESPONSES, Access
from helpline_shared.websession import Sessions

REFRESH_S = 30

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 1.5rem;
color:#1b1b1b;background:#fff}
h1{font-size:1.6rem;margin:.2rem 0}p.meta{color:#444;margin:.2rem 0 1rem}
dl.headline{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:.8rem;
margin:0 0 1.2rem}
dl.headline div{border:1px solid #ccd;border-radius:6px;padding:.6rem .8rem}
dt{font-size:.9rem;color:#333}dd{margin:0;font-size:1.9rem;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1rem}
figure{margin:0;border:1px solid #dde;border-radius:6px;padding:.6rem .8rem}
figure h2{font-size:1.1rem;margin:0 0 .4rem}
details{font-size:.9rem;margin-top:.3rem}table{border-collapse:collapse}
th,td{padding:.1rem .6rem;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right}
"""


def _int(n: int) -> str:
    return f"{n:,}"


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def duration(seconds: float) -> str:
    """A duration as a person reads it: seconds, minutes, hours or days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def headline(t: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """`(figure, label, raw value, shown text)` for each headline number."""
    past_due = sum(p["past_due"] for p in t.get("open_escalations", {}).values())
    return [
        ("cases", "Cases", t["cases"], _int(t["cases"])),
        ("urls_escalated", "URLs escalated", t["urls_escalated"], _int(t["urls_escalated"])),
        ("url_reports", "URL reports", t["url_reports"]["total"], _int(t["url_reports"]["total"])),
        ("takedown_rate", "Takedown rate", t["takedown_rate"], _rate(t["takedown_rate"])),
        ("past_due", "Open escalations past deadline", past_due, _int(past_due)),
    ]


def _table(caption: str, head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{escape(str(c))}</td>' if i else f"<td>{escape(str(c))}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    ths = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    return (
        f"<details><summary>{escape(caption)} as a table</summary><table>"
        f"<thead><tr>{ths}</tr></thead><tbody>{cells}</tbody></table></details>"
    )


def _figure(key: str, title: str, svg: str, table: str) -> str:
    return (
        f'<figure id="{key}" aria-labelledby="{key}-h"><h2 id="{key}-h">{escape(title)}</h2>'
        f"{svg}{table}</figure>"
    )


def charts(t: dict[str, Any]) -> list[str]:
    """The five charts, each a `<figure>` with a heading, an SVG and a data table."""
    months = sorted(t.get("cases_by_month", {}).items())
    share = sorted(t["cases_by_platform"].items(), key=lambda kv: (-kv[1]["cases"], kv[0]))
    outcomes = sorted(t.get("decisions_by_platform", {}).items())
    removal = sorted(t.get("time_to_removal", {}).items())
    opened = sorted(t.get("open_escalations", {}).items())
    decisions = sorted({d for _, ds in outcomes for d in ds})
    return [
        _figure(
            "cases-per-month",
            "Cases per month",
            vbars("Cases per month", months),
            _table("Cases per month", ("Month", "Cases"), months),
        ),
        _figure(
            "platform-share",
            "Share of cases involving each platform",
            hbars(
                "Share of cases involving each platform",
                [(p, v["share"] or 0, _rate(v["share"])) for p, v in share],
            ),
            _table(
                "Platform share",
                ("Platform", "Cases", "Share"),
                [(p, v["cases"], _rate(v["share"])) for p, v in share],
            ),
        ),
        _figure(
            "outcomes",
            "Platform decisions per platform",
            stacked("Platform decisions per platform", outcomes),
            _table(
                "Decisions",
                ("Platform", *decisions),
                [(p, *(ds.get(d, 0) for d in decisions)) for p, ds in outcomes],
            ),
        ),
        _figure(
            "time-to-removal",
            "Median time to removal per platform",
            hbars(
                "Median time to removal per platform",
                [(p, v["median_seconds"], f"{duration(v['median_seconds'])}") for p, v in removal],
            ),
            _table(
                "Time to removal",
                ("Platform", "Taken down", "Median hours", "p90 hours"),
                [(p, v["taken_down"], v["median_hours"], v["p90_hours"]) for p, v in removal],
            ),
        ),
        _figure(
            "past-due",
            "Open escalations past their deadline",
            hbars(
                "Open escalations past their deadline per platform",
                [(p, v["past_due"], f"{v['past_due']:,} of {v['open']:,} open") for p, v in opened],
            ),
            _table(
                "Open escalations",
                ("Platform", "Open", "Past deadline", "Oldest age (hours)"),
                [(p, v["open"], v["past_due"], v["oldest_age_hours"]) for p, v in opened],
            ),
        ),
    ]


def render(t: dict[str, Any]) -> str:
    """The dashboard page for the totals document `t`."""
    numbers = "".join(
        f'<div><dt id="h-{key}">{escape(label)}</dt>'
        f'<dd aria-labelledby="h-{key}" data-figure="{key}" data-value="{escape(str(raw))}">'
        f"{escape(shown)}</dd></div>"
        for key, label, raw, shown in headline(t)
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        f"<title>Helpline dashboard</title><style>{STYLE}</style></head><body>"
        "<header><h1>Helpline dashboard</h1>"
        f'<p class="meta">All-time figures as of <time datetime="{escape(t["as_of"])}">'
        f"{escape(t['as_of'][:19].replace('T', ' '))} UTC</time>; the page refreshes every"
        f' {REFRESH_S} s. The same figures as JSON: <a href="/v1/totals">/v1/totals</a>.</p>'
        "</header><main>"
        f'<section aria-labelledby="headline-h"><h2 id="headline-h">Headline figures</h2>'
        f'<dl class="headline">{numbers}</dl></section>'
        f'<section aria-label="Charts" class="charts">{"".join(charts(t))}</section>'
        "</main></body></html>"
    )


def add_dashboard(api: FastAPI, db: Database, access: Access, sessions: Sessions | None) -> None:
    """`GET /dashboard`: the page, from the current totals, for a caller with the `read`
    scope: an API key, or a sign-in session (`sessions`) of a live key that has it."""

    @api.get(
        "/dashboard",
        summary="The dashboard page",
        response_class=HTMLResponse,
        responses={**AUTH_RESPONSES},
    )
    async def page(
        _: Annotated[KeyInfo, Depends(access.require("read", sessions=sessions))],
    ) -> Response:
        async with db.pool.acquire() as conn:
            return HTMLResponse(render(await totals(conn)))
