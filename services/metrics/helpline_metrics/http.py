"""Metrics' HTTP API: `GET /v1/totals` (JSON), `GET /v1/report` (the annual report);
`/metrics` text is in `prometheus`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from helpline_metrics.periods import FilterError, Filters
from helpline_metrics.report import annual_report
from helpline_metrics.report_render import FORMATS, MEDIA_TYPES, render
from helpline_metrics.totals import totals
from helpline_shared.db import Database
from helpline_shared.service import endpoint


def build_routes(db: Database) -> list[tuple[str, ASGIApp]]:
    """`GET /v1/totals[?period=YYYY[-MM]&platform=P&harm_type=H]`: every total as JSON;
    `GET /v1/report?year=YYYY[&format=html|csv|json]`: the annual report (JSON by default).
    A malformed filter is a 400 with the reason."""

    async def get_totals(request: Request) -> Response:
        q = request.query_params
        f = Filters(q.get("period") or None, q.get("platform") or None, q.get("harm_type") or None)
        try:
            f.bounds()
        except FilterError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        async with db.pool.acquire() as conn:
            return JSONResponse(await totals(conn, f))

    async def get_report(request: Request) -> Response:
        year, fmt = request.query_params.get("year", ""), request.query_params.get("format", "json")
        if not (year.isdigit() and len(year) == 4) or fmt not in FORMATS:
            return JSONResponse(
                {"error": f"year=YYYY and format one of {', '.join(FORMATS)} are needed"},
                status_code=400,
            )
        async with db.pool.acquire() as conn:
            report = await annual_report(conn, int(year))
        return Response(render(report, fmt), media_type=MEDIA_TYPES[fmt])

    return [("/v1/totals", endpoint(get_totals)), ("/v1/report", endpoint(get_report))]
