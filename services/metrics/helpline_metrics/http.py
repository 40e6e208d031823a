"""Metrics' HTTP API: `GET /v1/totals` (JSON); `/metrics` text is in `prometheus`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from helpline_metrics.totals import totals
from helpline_shared.db import Database
from helpline_shared.service import endpoint


def build_routes(db: Database) -> list[tuple[str, ASGIApp]]:
    """`GET /v1/totals`: every running total as JSON."""

    async def get_totals(_: Request) -> Response:
        async with db.pool.acquire() as conn:
            return JSONResponse(await totals(conn))

    return [("/v1/totals", endpoint(get_totals))]
