"""Metrics' running totals in Prometheus text, appended to the service's `/metrics`.

Names follow Prometheus conventions: what only grows is a counter ending in `_total`
(`helpline_cases_total`), a level that moves is a gauge without it
(`helpline_escalations{platform,state}`), time is in seconds (`_seconds_total`), and each
label is named for what it holds (`platform`, `state`, `harm_type`, `urgency`, ...).
A total this table does not know yet is still exposed, as a gauge named after it (without
`_total`), its label named after the word following its last `_by_` (else `key`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from helpline_metrics.figures import escalation_figures, report_figures
from helpline_metrics.periods import Filters
from helpline_metrics.totals import read_counters
from helpline_shared.db import Database


@dataclass(frozen=True)
class Exposed:
    """How one stored total is exposed: metric name (a counter's without `_total`), kind,
    label names (a stored label `a:b` splits into two labels), help."""

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


EXPOSED: dict[str, Exposed] = {
    "cases_total": Exposed("helpline_cases", "counter", (), "Cases triaged."),
    "cases_by_platform": Exposed(
        "helpline_cases_by_platform", "counter", ("platform",), "Cases involving a platform."
    ),
    "cases_by_harm_type": Exposed(
        "helpline_cases_by_harm_type", "counter", ("harm_type",), "Cases per harm type."
    ),
    "cases_by_urgency": Exposed(
        "helpline_cases_by_urgency", "counter", ("urgency",), "Cases per urgency."
    ),
    "urls_total": Exposed("helpline_urls", "counter", (), "URL reports (each URL of a case)."),
    "url_reports_by_state": Exposed(
        "helpline_url_reports", "gauge", ("state",), "URL reports in each escalation state."
    ),
    "url_report_takedowns": Exposed(
        "helpline_url_report_takedowns", "counter", (), "URL reports whose content came down."
    ),
    "urls_escalated": Exposed(
        "helpline_urls_escalated", "counter", (), "Distinct content a platform was notified of."
    ),
    "escalations_total": Exposed(
        "helpline_escalations", "counter", (), "Distinct content escalated (first outcome)."
    ),
    "escalations_by_platform_state": Exposed(
        "helpline_escalations",
        "gauge",
        ("platform", "state"),
        "Escalations (distinct content) in each state, per platform.",
    ),
    "decisions": Exposed(
        "helpline_decisions", "counter", ("decision",), "Platform decisions per decision."
    ),
    "takedowns": Exposed(
        "helpline_takedowns", "counter", (), "Distinct content a platform's decision took down."
    ),
    "decision_seconds": Exposed(
        "helpline_decision_wait_seconds",
        "counter",
        ("platform",),
        "Summed time from first report to platform decision, over decided content.",
    ),
    "reports_rejected_total": Exposed(
        "helpline_reports_rejected", "counter", (), "Reports refused by intake."
    ),
    "reports_rejected_by_type": Exposed(
        "helpline_report_rejections_by_type", "counter", ("type",), "Refusals per reason type."
    ),
    # Sums of other series: escalations_by_platform_state summed by state.
    "escalations_by_state": Exposed("", "skip", (), ""),
}


def exposed(name: str) -> Exposed:
    """How the stored total `name` is exposed (see the module's note on unknown names)."""
    if name in EXPOSED:
        return EXPOSED[name]
    label = name.rsplit("_by_", 1)[1] if "_by_" in name else "key"
    return Exposed(f"helpline_{name.removesuffix('_total')}", "gauge", (label,), f"Total {name}.")


class TotalsCollector(Collector):
    """The stored totals `{name: {label: value}}` as Prometheus families (see `exposed`)."""

    def __init__(self, counters: dict[str, dict[str, int]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        for stored, values in sorted(self._counters.items()):
            how = exposed(stored)
            if how.kind == "skip":
                continue
            labels = list(how.labels) if set(values) != {""} else []
            family = CounterMetricFamily if how.kind == "counter" else GaugeMetricFamily
            m = family(how.name, how.help, labels=labels)
            for label, value in sorted(values.items()):
                parts = label.rsplit(":", len(labels) - 1) if labels else []
                if len(parts) != len(labels):
                    parts = [label, *[""] * (len(labels) - 1)]
                m.add_metric(parts, value)
            yield m


class DeadlineCollector(Collector):
    """Deadline figures the alerts watch: URL reports decided after their case's deadline
    (or named by a `breached` outcome) per platform, and open escalations past it."""

    def __init__(self, breaches: dict[str, int], past_due: dict[str, int]) -> None:
        self._breaches = breaches
        self._past_due = past_due

    def collect(self) -> Iterator[Metric]:
        b = CounterMetricFamily(
            "helpline_deadline_breaches",
            "URL reports whose platform decision came after the case's deadline.",
            labels=["platform"],
        )
        for platform, n in sorted(self._breaches.items()):
            b.add_metric([platform], n)
        yield b
        g = GaugeMetricFamily(
            "helpline_open_escalations_past_due",
            "Open escalations (distinct content) whose case's decision deadline has passed.",
            labels=["platform"],
        )
        for platform, n in sorted(self._past_due.items()):
            g.add_metric([platform], n)
        yield g


def totals_renderer(db: Database) -> Callable[[], Awaitable[bytes]]:
    """The running totals in Prometheus text, appended to the service's `/metrics`."""

    async def render() -> bytes:
        async with db.pool.acquire() as conn:
            counters = await read_counters(conn)
            reports = await report_figures(conn, Filters())
            escalations = await escalation_figures(conn, Filters())
        registry = CollectorRegistry()
        registry.register(TotalsCollector(counters))
        past_due = {p: o["past_due"] for p, o in escalations["open_escalations"].items()}
        registry.register(DeadlineCollector(reports["breaches_by_platform"], past_due))
        return bytes(generate_latest(registry))

    return render
