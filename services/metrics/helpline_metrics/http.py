"""Metrics' HTTP API: `GET /v1/totals` (JSON) and `GET /metrics` (Prometheus text)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from helpline_metrics.totals import read_counters, totals
from helpline_shared.db import Database
from helpline_shared.service import endpoint


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


def build_routes(db: Database) -> list[tuple[str, ASGIApp]]:
    """`GET /v1/totals`: every running total as JSON."""

    async def get_totals(_: Request) -> Response:
        async with db.pool.acquire() as conn:
            return JSONResponse(await totals(conn))

    return [("/v1/totals", endpoint(get_totals))]
