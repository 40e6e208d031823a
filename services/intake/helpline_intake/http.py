"""Intake's HTTP API: `POST /v1/reports` takes the same JSON as the Kafka topic.

A valid report is published onto `helpline.reports.submitted` (acknowledged by the broker)
and answered 202 with its case id; the intake consumer then stores it exactly as it does
reports from other systems, so both paths share one deduplication. An invalid one is
answered 422 with every reason and published to `helpline.reports.rejected`; a body over
the size limit is answered 413 without being read further.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from helpline_intake.submission import hand_over, method_not_allowed, read_capped
from helpline_intake.usecase import case_id_for
from helpline_intake.validation import MAX_MESSAGE_BYTES, validate_report
from helpline_shared.events import RejectionReason, ReportSubmittedV1
from helpline_shared.service import endpoint


def build_routes(broker: KafkaBroker) -> list[tuple[str, ASGIApp]]:
    async def submit(request: Request) -> Response:
        if request.method != "POST":
            return method_not_allowed("POST")
        raw = await read_capped(request)
        if raw is None:
            message = f"the body is over the limit of {MAX_MESSAGE_BYTES} bytes"
            return JSONResponse(
                {
                    "status": "rejected",
                    "errors": [{"loc": "", "type": "too_large", "message": message}],
                },
                status_code=413,
            )
        result: ReportSubmittedV1 | list[RejectionReason]
        if "json" not in request.headers.get("content-type", "application/json"):
            result = [
                RejectionReason(
                    loc="", message="send Content-Type: application/json", type="content_type"
                )
            ]
        else:
            result = validate_report(raw)
        event = await hand_over(broker, raw, result)
        if event is not None:
            return JSONResponse(
                {
                    "status": "rejected",
                    "rejection_id": str(event.event_id),
                    "errors": [r.model_dump() for r in event.reasons],
                },
                status_code=422,
            )
        assert isinstance(result, ReportSubmittedV1)
        return JSONResponse(
            {"status": "accepted", "case_id": str(case_id_for(result))}, status_code=202
        )

    return [("/v1/reports", endpoint(submit))]
