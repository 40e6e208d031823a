"""Metrics' HTTP API: `GET /v1/totals` (JSON), `GET /v1/report` (the annual report) and
`GET /dashboard` (the page), each for a caller with the `read` scope (an API key, or for
the page also a practitioner's sign-in session); `/metrics` text is in `prometheus` and
stays open: it belongs on an internal port or behind a NetworkPolicy."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# definition time, and their dependencies name local objects.

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from starlette.responses import Response

from helpline_metrics.dashboard import add_dashboard
from helpline_metrics.models import AnnualReport, Totals
from helpline_metrics.periods import FilterError, Filters
from helpline_metrics.report import annual_report
from helpline_metrics.report_render import FORMATS, MEDIA_TYPES, render
from helpline_metrics.totals import totals
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Database
from helpline_shared.webapi import (
    AUTH_RESPONSES,
    Access,
    add_schemas,
    new_api,
    problem,
    problem_response,
)
from helpline_shared.websession import Sessions

BAD_FILTER: dict[int | str, dict[str, Any]] = {
    400: problem_response("A malformed filter or year; the reason is given.")
}


def bad_request(detail: str) -> Response:
    return problem(400, "Bad filter", detail, slug="bad-filter")


def build_api(db: Database, access: Access, sessions: Sessions | None = None) -> FastAPI:
    """`GET /v1/totals[?period=YYYY[-MM]&platform=P&harm_type=H]`: every total as JSON;
    `GET /v1/report?year=YYYY[&format=html|csv|json]`: the annual report (JSON by default);
    `GET /dashboard`. A malformed filter is a 400 problem with the reason."""
    api = new_api(
        "Helpline metrics",
        "The running totals, the annual report and the dashboard, for keys with the `read` "
        "scope (`practitioner` implies it).",
    )
    reader = Annotated[KeyInfo, Depends(access.require("read", sessions=sessions))]

    @api.get(
        "/v1/totals",
        summary="Every total, optionally filtered",
        response_model=Totals,
        responses={**AUTH_RESPONSES, **BAD_FILTER},
    )
    async def get_totals(
        _: reader,
        period: Annotated[
            str | None, Query(description="YYYY or YYYY-MM (UTC).", examples=["2024-03"])
        ] = None,
        platform: Annotated[str | None, Query(examples=["tiktok"])] = None,
        harm_type: Annotated[str | None, Query(examples=["impersonation"])] = None,
    ) -> Any:
        f = Filters(period or None, platform or None, harm_type or None)
        try:
            f.bounds()
        except FilterError as exc:
            return bad_request(str(exc))
        async with db.pool.acquire() as conn:
            return await totals(conn, f)

    @api.get(
        "/v1/report",
        summary="The annual report",
        response_class=Response,
        responses={
            200: {
                "description": "The report in the asked format.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/AnnualReport"}},
                    "text/csv": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
            **AUTH_RESPONSES,
            **BAD_FILTER,
        },
    )
    async def get_report(
        _: reader,
        year: Annotated[str | None, Query(description="YYYY.", examples=["2024"])] = None,
        format: Annotated[
            str, Query(description=f"One of {', '.join(FORMATS)}.", examples=["json"])
        ] = "json",
    ) -> Response:
        if not (year and year.isdigit() and len(year) == 4) or format not in FORMATS:
            return bad_request(f"year=YYYY and format one of {', '.join(FORMATS)} are needed")
        async with db.pool.acquire() as conn:
            report = await annual_report(conn, int(year))
        AnnualReport.model_validate(report)  # what the document promises, or a 500
        return Response(render(report, format), media_type=MEDIA_TYPES[format])

    report_schema = AnnualReport.model_json_schema(ref_template="#/components/schemas/{model}")
    add_schemas(api, {**report_schema.pop("$defs", {}), "AnnualReport": report_schema})
    add_dashboard(api, db, access, sessions)
    return api
