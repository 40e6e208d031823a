"""Intake's HTTP API: `POST /v1/reports` takes the same JSON as the Kafka topic.

A valid report is published onto `helpline.reports.submitted` (acknowledged by the broker)
and answered 202 with its case id; the intake consumer then stores it exactly as it does
reports from other systems, so both paths share one deduplication. A refusal is stored and
published on `helpline.reports.rejected` (see `submission`) and answered 422 with every
reason, 413 for a body over the size limit (not read further), or 409 with RFC 9457
problem details when other content is already stored under its `(source, report_id)`.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from helpline_intake.submission import Handover, Refused, method_not_allowed, read_capped
from helpline_intake.usecase import case_id_for
from helpline_intake.validation import too_large_body, validate_report
from helpline_shared.db import Database
from helpline_shared.events import RejectionReason, ReportSubmittedV1
from helpline_shared.service import endpoint

WRONG_TYPE = RejectionReason(
    loc="", message="send Content-Type: application/json", type="content_type"
)


def refused(refusal: Refused) -> Response:
    event = refusal.event
    if refusal.status == 409:
        return conflict_problem(refusal)
    return JSONResponse(
        {
            "status": "rejected",
            "rejection_id": str(event.event_id),
            "errors": [r.model_dump() for r in event.reasons],
        },
        status_code=refusal.status,
    )


def conflict_problem(refusal: Refused) -> Response:
    """RFC 9457 problem details for a conflicting resubmission."""
    event = refusal.event
    return JSONResponse(
        {
            "type": "https://helpline.example/problems/conflict",
            "title": "Another report is stored under this source and report_id",
            "status": 409,
            "detail": event.reasons[0].message,
            "rejection_id": str(event.event_id),
            "errors": [r.model_dump() for r in event.reasons],
        },
        status_code=409,
        media_type="application/problem+json",
    )


def build_routes(broker: KafkaBroker, db: Database) -> list[tuple[str, ASGIApp]]:
    handover = Handover(broker, db)

    async def submit(request: Request) -> Response:
        if request.method != "POST":
            return method_not_allowed("POST")
        raw = await read_capped(request)
        if raw is None:
            return refused(await handover.refuse(None, too_large_body(), "http", 413))
        result: ReportSubmittedV1 | list[RejectionReason]
        if "json" not in request.headers.get("content-type", "application/json"):
            result = [WRONG_TYPE]
        else:
            result = validate_report(raw)
        refusal = await handover.submit(raw, result, "http")
        if refusal is not None:
            return refused(refusal)
        assert isinstance(result, ReportSubmittedV1)
        return JSONResponse(
            {"status": "accepted", "case_id": str(case_id_for(result))}, status_code=202
        )

    return [("/v1/reports", endpoint(submit))]
