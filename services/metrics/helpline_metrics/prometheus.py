"""Metrics' running totals in Prometheus text, appended to the service's `/metrics`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from helpline_metrics.totals import read_counters
from helpline_shared.db import Database


class _Snapshot(Collector):
    def __init__(self, counters: dict[str, dict[str, int]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        for name, labels in sorted(self._counters.items()):
            if set(labels) == {""}:
                g = GaugeMetricFamily(f"helpline_{name}", f"Running total {name}.")
                g.add_metric([], labels[""])
            else:
                g = GaugeMetricFamily(f"helpline_{name}", f"Running total {name}.", labels=["key"])
                for label, value in sorted(labels.items()):
                    g.add_metric([label], value)
            yield g


def totals_renderer(db: Database) -> Callable[[], Awaitable[bytes]]:
    """The running totals in Prometheus text, appended to the service's `/metrics`."""

    async def render() -> bytes:
        async with db.pool.acquire() as conn:
            counters = await read_counters(conn)
        registry = CollectorRegistry()
        registry.register(_Snapshot(counters))
        return bytes(generate_latest(registry))

    return render
