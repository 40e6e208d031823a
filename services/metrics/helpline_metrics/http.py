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

# What the document states a period and a year look like: a year 0001-9998 (one whose start
# and end a timestamp can hold), a month 01-12; an empty period is all time. A value that
# does not match is answered by the handler, a 400 problem with the reason.
MIN_YEAR, MAX_YEAR = 1, 9998
_YEAR = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
PERIOD_PATTERN = rf"^({_YEAR}(-(0[1-9]|1[0-2]))?)?$"
YEAR_PATTERN = rf"^{_YEAR}$"
# Query text PostgreSQL can hold (no NUL); longer than any platform or harm type.
_TEXT = r"^[^\x00]*$"
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
            str | None,
            Query(
                description="YYYY or YYYY-MM (UTC).",
                examples=["2024-03"],
                json_schema_extra={"pattern": PERIOD_PATTERN},
            ),
        ] = None,
        platform: Annotated[
            str | None, Query(max_length=100, pattern=_TEXT, examples=["tiktok"])
        ] = None,
        harm_type: Annotated[
            str | None, Query(max_length=100, pattern=_TEXT, examples=["impersonation"])
        ] = None,
    ) -> Any:
        f = Filters(period or None, platform or None, harm_type or None)
        if period and not period.isascii():
            return bad_request("period must be YYYY or YYYY-MM in ASCII digits")
        try:
            f.bounds()
        except FilterError as exc:
            return bad_request(str(exc))
        except (ValueError, OverflowError):  # a year datetime cannot hold, e.g. 0000
            return bad_request(f"period must fall in the years {MIN_YEAR} to {MAX_YEAR}")
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
        year: Annotated[
            str,
            Query(
                description="YYYY (required).",
                examples=["2024"],
                json_schema_extra={"pattern": YEAR_PATTERN},
            ),
        ],
        format: Annotated[
            str,
            Query(
                description=f"One of {', '.join(FORMATS)}.",
                examples=["json"],
                json_schema_extra={"enum": list(FORMATS)},
            ),
        ] = "json",
    ) -> Response:
        if not (year.isascii() and year.isdigit() and len(year) == 4) or format not in FORMATS:
            return bad_request(f"year=YYYY and format one of {', '.join(FORMATS)} are needed")
        if not MIN_YEAR <= int(year) <= MAX_YEAR:
            return bad_request(f"year must fall in {MIN_YEAR} to {MAX_YEAR}")
        async with db.pool.acquire() as conn:
            report = await annual_report(conn, int(year))
        AnnualReport.model_validate(report)  # what the document promises, or a 500
        return Response(render(report, format), media_type=MEDIA_TYPES[format])

    report_schema = AnnualReport.model_json_schema(ref_template="#/components/schemas/{model}")
    add_schemas(api, {**report_schema.pop("$defs", {}), "AnnualReport": report_schema})
    add_dashboard(api, db, access, sessions)
    return api
