"""Turning submitted bytes into a report, or into the specific reasons they were refused."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from helpline_shared.events import RejectionReason, ReportSubmittedV1

# Reports are small; this leaves room for a rejection (base64) under Kafka's 1 MB default.
MAX_MESSAGE_BYTES = 512_000


def validate_report(raw: bytes | None) -> ReportSubmittedV1 | list[RejectionReason]:
    """Parse a submitted report. Never raises: invalid input yields one reason per problem.

    Reasons never echo the input (it may hold personal data), only where and what.
    """
    if not raw:
        return [RejectionReason(loc="", message="empty message", type="empty")]
    if len(raw) > MAX_MESSAGE_BYTES:
        return [
            RejectionReason(
                loc="",
                message=f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}",
                type="too_large",
            )
        ]
    try:
        return ReportSubmittedV1.model_validate_json(raw)
    except ValidationError as exc:
        return [_reason(err) for err in exc.errors(include_input=False, include_url=False)]


def _reason(err: Any) -> RejectionReason:
    # A key sent by the publisher can hold NUL, which PostgreSQL text cannot store.
    loc = ".".join(str(part) for part in err["loc"]).replace("\x00", "\\u0000")
    message = err["msg"].replace("\x00", "\\u0000")
    if loc.endswith("email"):
        # The email library quotes parts of the address in its messages.
        message = "value is not a valid email address"
    return RejectionReason(loc=loc, message=message, type=err["type"])


def too_large_body() -> list[RejectionReason]:
    """Why a body that passed the limit while being read was refused (it was not kept)."""
    message = f"the body is over the limit of {MAX_MESSAGE_BYTES} bytes"
    return [RejectionReason(loc="", message=message, type="too_large")]


def conflict() -> list[RejectionReason]:
    """Why a report is refused whose `(source, report_id)` holds other content already."""
    message = (
        "a different report was already accepted under this source and report_id; "
        "send a new report under a new report_id"
    )
    return [RejectionReason(loc="report_id", message=message, type="conflict")]


def content_hash(report: ReportSubmittedV1) -> str:
    """A stable hash of the canonical report: equal for the same content however it was
    written (key order, whitespace between tokens, whitespace that validation strips)."""
    return hashlib.sha256(report.model_dump_json().encode()).hexdigest()
