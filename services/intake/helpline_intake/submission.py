"""What the HTTP API and the web form share: a capped body, and handing a report over.

A valid report is published onto `helpline.reports.submitted` (acknowledged by the broker)
for the intake consumer to store, so every path shares one deduplication; a refused one
is published onto `helpline.reports.rejected` with its reasons.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from helpline_intake.usecase import rejected_message, rejection
from helpline_intake.validation import MAX_MESSAGE_BYTES
from helpline_shared.events import RejectionReason, ReportRejectedV1, ReportSubmittedV1
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.topics import REPORTS_SUBMITTED


def method_not_allowed(allowed: str) -> Response:
    """405 for a method the route does not serve: nothing is read, published or counted."""
    return PlainTextResponse(
        f"method not allowed; use {allowed}", status_code=405, headers={"Allow": allowed}
    )


async def read_capped(request: Request) -> bytes | None:
    """The request body, or None as soon as it passes the size limit."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MESSAGE_BYTES:
            return None
    return bytes(body)


async def hand_over(
    broker: KafkaBroker, raw: bytes, result: ReportSubmittedV1 | list[RejectionReason]
) -> ReportRejectedV1 | None:
    """Publish the report for intake, or its rejection; returns the rejection if refused."""
    if isinstance(result, ReportSubmittedV1):
        await publish_all(
            broker, [OutgoingMessage(REPORTS_SUBMITTED.name, raw, result.report_id.encode())]
        )
        return None
    event = rejection(raw, result, via="http")
    await publish_all(broker, [rejected_message(event, None)])
    return event
