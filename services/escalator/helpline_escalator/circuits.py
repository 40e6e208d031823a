"""The platforms' circuit breakers as the outside sees them: `/metrics` and readiness.

Read at scrape or probe time from the dispatcher's workers, so a worker added at startup
is reported without registering anything more. An open circuit never makes the escalator
unready (one platform down must not take the others out of service): readiness lists it
in its detail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from helpline_escalator.breaker import STATES
from helpline_escalator.dispatcher import Dispatcher


class CircuitCollector(Collector):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        is_open = GaugeMetricFamily(
            "helpline_platform_circuit_open",
            "1 while the platform's circuit is open or half-open (its escalations wait).",
            labels=["platform"],
        )
        state = GaugeMetricFamily(
            "helpline_platform_circuit_state",
            "1 for the platform circuit's current state (closed, open, half_open).",
            labels=["platform", "state"],
        )
        failures = GaugeMetricFamily(
            "helpline_platform_consecutive_failures",
            "Consecutive failed calls to the platform (reset by any answer).",
            labels=["platform"],
        )
        for slug, worker in sorted(self._dispatcher.workers.items()):
            b = worker.breaker
            is_open.add_metric([slug], 0.0 if b.state == "closed" else 1.0)
            for s in STATES:
                state.add_metric([slug, s], 1.0 if b.state == s else 0.0)
            failures.add_metric([slug], float(b.consecutive))
        yield is_open
        yield state
        yield failures


def register_circuits(registry: CollectorRegistry, dispatcher: Dispatcher) -> None:
    registry.register(CircuitCollector(dispatcher))


def open_circuits(dispatcher: Dispatcher) -> dict[str, Any]:
    """The platforms whose escalations wait, with why and for how long (readiness detail)."""
    return {
        slug: {
            "state": w.breaker.state,
            "reason": w.breaker.reason,
            "probe_in_s": round(w.breaker.resume_in_s(), 1),
        }
        for slug, w in sorted(dispatcher.workers.items())
        if w.breaker.state != "closed"
    }
