"""The annual report in its published form, from the same figures as `GET /v1/totals`.

One function, :func:`annual_report`, used by `GET /v1/report` and by `helpline report`:
cases received in the year, the share of cases involving each platform (TikTok first, then
by number of cases), URLs escalated, the takedown rate, cases per issue type (a case counts
under each of its types), and each platform's time to removal (exact median and p90).
Rendering is in :mod:`helpline_metrics.report_render`.
"""

from __future__ import annotations

from typing import Any

from helpline_metrics.figures import DECIDED_STATES, figures
from helpline_metrics.periods import Filters
from helpline_shared.db import Conn
from helpline_shared.platform_names import PLATFORM_NAMES as KNOWN_PLATFORM_NAMES

FIRST_PLATFORM = "tiktok"

# Each platform by name; a URL on no known platform, as this page words it.
PLATFORM_NAMES = {**KNOWN_PLATFORM_NAMES, "unknown": "Other websites"}

ISSUE_NAMES = {
    "online_reputation": "Online reputation",
    "bullying_harassment": "Bullying and harassment",
    "impersonation": "Impersonation",
    "school_branding_misuse": "Misuse of school branding",
    "privacy_images_doxxing": "Privacy, images and doxxing",
    "child_sexual_imagery": "Child sexual imagery",
    "threats_risk_to_life": "Threats and risk to life",
    "self_harm": "Self-harm",
    "hate": "Hate",
    "scams": "Scams",
    "other": "Other",
}

METHOD = [
    "A case is one report received by the helpline in the year (by the date intake received "
    "it), whatever number of URLs it names; a case involving several platforms counts once "
    "for each of them, and once under each issue type triage gave it, so shares add up to "
    "more than 100%.",
    "A URL escalated is a distinct piece of content (one canonical URL on one platform) the "
    "helpline notified the platform of; the same content reported by several cases is "
    "escalated, and counted, once. URL reports count every URL of every case.",
    "A takedown is a platform decision that removed or disabled the content, or found it "
    "already gone. The takedown rate is takedowns divided by escalated content with a "
    "platform decision; content still waiting is not counted.",
    "Time to removal runs from the first report of the content reaching the helpline to "
    "the platform's takedown decision: the median and the 90th percentile (nearest rank) "
    "of the exact times of that platform's takedowns.",
    "A deadline breach is escalated content whose platform had not decided by the deadline "
    "for its case's urgency; each counts once, even if the platform decided later. After an "
    "appeal the final decision counts; content a practitioner closed as advice only is not "
    "a platform decision.",
]


def _order(item: tuple[str, int]) -> tuple[int, int, str]:
    platform, cases = item
    return (platform != FIRST_PLATFORM, -cases, platform)


async def annual_report(conn: Conn, year: int, schema: str = "metrics") -> dict[str, Any]:
    """The year's published figures (JSON-ready; shares and rates as fractions)."""
    f = await figures(conn, Filters(period=f"{year:04d}"), schema)
    cases = f["cases"]
    counts = {p: v["cases"] for p, v in f["cases_by_platform"].items()}
    decided = sum(f["escalations"]["by_state"].get(s, 0) for s in DECIDED_STATES)
    issues = sorted(f["cases_by_harm_type"].items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "year": year,
        "cases": cases,
        "platforms": [
            {
                "platform": p,
                "name": PLATFORM_NAMES.get(p, p),
                "cases": n,
                "share": round(n / cases, 4) if cases else None,
            }
            for p, n in sorted(counts.items(), key=_order)
        ],
        "urls_escalated": f["urls_escalated"],
        "url_reports": f["url_reports"]["total"],
        "decided": decided,
        "takedowns": f["takedowns"],
        "takedown_rate": f["takedown_rate"],
        "issue_types": [
            {
                "issue_type": k,
                "name": ISSUE_NAMES.get(k, k),
                "cases": n,
                "share": round(n / cases, 4) if cases else None,
            }
            for k, n in issues
        ],
        "time_to_removal": [
            {
                "platform": p,
                "name": PLATFORM_NAMES.get(p, p),
                "taken_down": d["taken_down"],
                "median_hours": d["median_hours"],
                "p90_hours": d["p90_hours"],
            }
            for p, d in sorted(
                f["time_to_removal"].items(), key=lambda kv: _order((kv[0], counts.get(kv[0], 0)))
            )
        ],
        "casework": {
            "deadline_breaches": f["breaches"]["total"],
            "deadline_breaches_by_platform": [
                {"platform": p, "name": PLATFORM_NAMES.get(p, p), "breaches": n}
                for p, n in sorted(
                    f["breaches"]["by_platform"].items(),
                    key=lambda kv: _order((kv[0], counts.get(kv[0], 0))),
                )
            ],
            "appeals": f["appeals"],
            "overturned": f["overturned"],
            "closed_advice_only": f["closed_advice_only"],
            "manual_decisions": f["manual_decisions"],
        },
        "method": METHOD,
    }
