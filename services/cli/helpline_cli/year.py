"""A generated year of reports shaped like the published 2024 figures, and its ground truth.

The POSH 2024 annual report (`../shared/context/`) gives 2,219 cases, 76% involving TikTok,
over 4,000 URLs escalated (4,064 here), a 94.2% takedown rate, and cases per issue type
(several per case): online reputation 1,717, bullying and harassment 1,515, impersonation
158 and misuse of school branding a few dozen (40 here). The other platforms' shares are
not published: the ones below are plausible, not quoted.

`generate` is deterministic for a seed and scales every count (`scale` 0.05 gives about
110 cases). Each report is marked simulated (its `source` is `simulated:<year>:seed<N>`),
carries `submitted_at` in the year, declares its issue types (the reporter's own
classification, which triage keeps) and a description no harm rule reads more into, and
names only new content on known platforms, so every URL is escalated once. The ground truth
is counted from the reports themselves, never from the pipeline.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

CASES = 2219
TIKTOK_SHARE = 0.76
URLS = 4064
TAKEDOWN_RATE = 0.942
ISSUES = {  # published counts; a case has one or more
    "online_reputation": 1717,
    "bullying_harassment": 1515,
    "impersonation": 158,
    "school_branding_misuse": 40,
}
# Cases not involving TikTok, by platform (weights; not published); some TikTok cases name
# a second platform too.
OTHERS = {"instagram": 30, "snapchat": 20, "youtube": 18, "facebook": 14, "x": 12, "reddit": 6}
ALSO_ELSEWHERE = 0.06
URL_FORMS = {
    "tiktok": "https://www.tiktok.com/@sim{case}/video/{n}",
    "instagram": "https://www.instagram.com/p/Sim{n}/",
    "facebook": "https://www.facebook.com/posts/{n}",
    "youtube": "https://www.youtube.com/watch?v=s{n}",
    "x": "https://x.com/sim{case}/status/{n}",
    "snapchat": "https://www.snapchat.com/add/sim{case}x{n}",
    "reddit": "https://www.reddit.com/r/sim{case}/comments/s{n}/post/",
}
DESCRIPTION = "Please review the content at the links in this report."


def source_for(year: int, seed: int) -> str:
    """The simulated-namespace source of a generated year."""
    return f"simulated:{year}:seed{seed}"


@dataclass
class Truth:
    """What the generated year holds, counted from its reports."""

    cases: int = 0
    urls: int = 0
    cases_by_platform: Counter[str] = field(default_factory=Counter)
    cases_by_issue: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Year:
    year: int
    seed: int
    reports: list[bytes]  # in order of submission
    truth: Truth


def _scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def _issue_sets(rng: random.Random, n: int, scale: float) -> list[set[str]]:
    """Exactly the scaled count of cases under each type, every case with at least one:
    bullying first covers the cases online reputation leaves without a type."""
    sets: list[set[str]] = [set() for _ in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    reputation = min(n, _scaled(ISSUES["online_reputation"], scale))
    for i in order[:reputation]:
        sets[i].add("online_reputation")
    bullying = min(n, max(n - reputation, _scaled(ISSUES["bullying_harassment"], scale)))
    rest = order[reputation:]
    extra = rng.sample(order[:reputation], bullying - len(rest))
    for i in rest + extra:
        sets[i].add("bullying_harassment")
    for kind in ("impersonation", "school_branding_misuse"):
        for i in rng.sample(range(n), min(n, _scaled(ISSUES[kind], scale))):
            sets[i].add(kind)
    return sets


def _platform_sets(rng: random.Random, n: int) -> list[list[str]]:
    tiktok = round(n * TIKTOK_SHARE)
    names, weights = list(OTHERS), list(OTHERS.values())
    out: list[list[str]] = []
    for i in range(n):
        if i < tiktok:
            extra = rng.choices(names, weights)[0] if rng.random() < ALSO_ELSEWHERE else None
            out.append(["tiktok"] + ([extra] if extra else []))
        else:
            out.append([rng.choices(names, weights)[0]])
    rng.shuffle(out)
    return out


def generate(year: int, seed: int, scale: float = 1.0) -> Year:
    """The year's reports (JSON bytes, as a publisher sends them) and their ground truth."""
    if not 0 < scale <= 10:
        raise ValueError("scale must be above 0 and at most 10")
    rng = random.Random(f"{year}:{seed}:{scale}")
    n = _scaled(CASES, scale)
    issues = _issue_sets(rng, n, scale)
    platforms = _platform_sets(rng, n)
    per_case = [len(p) for p in platforms]  # one URL per platform, the rest spread out
    for _ in range(max(0, _scaled(URLS, scale) - sum(per_case))):
        per_case[rng.randrange(n)] += 1
    start = datetime(year, 1, 1, tzinfo=UTC)
    seconds = int((datetime(year + 1, 1, 1, tzinfo=UTC) - start).total_seconds())
    times = sorted(start + timedelta(seconds=rng.randrange(seconds)) for _ in range(n))
    truth, reports, source = Truth(), [], source_for(year, seed)
    serial = 0
    for i in range(n):
        urls = []
        for k in range(per_case[i]):
            platform = platforms[i][k] if k < len(platforms[i]) else rng.choice(platforms[i])
            serial += 1
            urls.append(URL_FORMS[platform].format(case=i, n=f"{seed}{serial:07d}"))
        truth.cases += 1
        truth.urls += len(urls)
        truth.cases_by_platform.update(set(platforms[i]))
        truth.cases_by_issue.update(issues[i])
        body = {
            "schema_version": 1,
            "source": source,
            "report_id": f"{year}-{i:05d}",
            "submitted_at": times[i].isoformat(),
            "reporter": {"name": "Simulated Reporter", "email": "reporter@school.example"},
            "organisation": f"Simulated School {i % 400}",
            "description": DESCRIPTION,
            "urls": urls,
            "issue_types": sorted(issues[i]),
        }
        reports.append(json.dumps(body).encode())
    return Year(year, seed, reports, truth)
