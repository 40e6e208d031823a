"""Turning submitted bytes into a report, or into the specific reasons they were refused."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from helpline_shared.events import (
    SIMULATED_SOURCE_PREFIX,
    RejectionReason,
    ReportSubmittedV1,
    ReportSubmittedV2,
    is_simulated_source,
)

# Reports are small; this leaves room for a rejection (base64) under Kafka's 1 MB default.
MAX_MESSAGE_BYTES = 512_000

# The report contract's versions intake reads side by side, by `schema_version`. A report
# without one is read as version 1 (whose validation then says it is missing).
VERSIONS: dict[int, type[ReportSubmittedV1]] = {1: ReportSubmittedV1, 2: ReportSubmittedV2}


def validate_report(
    raw: bytes | None, *, allow_simulated: bool = False
) -> ReportSubmittedV1 | list[RejectionReason]:
    """Parse a submitted report of a version intake reads (see `VERSIONS`). Never raises:
    invalid input yields one reason per problem; an unknown `schema_version` yields one
    reason (`unsupported_version`), its other fields not judged against any contract.
    A report whose source is in the simulated namespace is refused (`simulated`) unless
    `allow_simulated` (HELPLINE_ALLOW_SIMULATED_REPORTS, set by `helpline simulate`).

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
    model = _version_of(raw)
    if not isinstance(model, type):
        return [model]
    try:
        report = model.model_validate_json(raw)
    except ValidationError as exc:
        return [_reason(err) for err in exc.errors(include_input=False, include_url=False)]
    if is_simulated_source(report.source) and not allow_simulated:
        return [simulated_refused()]
    return report


def simulated_refused() -> RejectionReason:
    """Why a generated report is refused where simulated reports are not allowed."""
    message = (
        f"sources starting {SIMULATED_SOURCE_PREFIX!r} are reserved for simulated reports, "
        "which this deployment does not accept (HELPLINE_ALLOW_SIMULATED_REPORTS is not true)"
    )
    return RejectionReason(loc="source", message=message, type="simulated")


def _version_of(raw: bytes) -> type[ReportSubmittedV1] | RejectionReason:
    """The model for the report's `schema_version`, or why that version cannot be read.
    Bytes that are not a JSON object go to version 1, whose validation says what is wrong."""
    try:
        data = from_json(raw)
    except ValueError:
        return ReportSubmittedV1
    if not isinstance(data, dict) or "schema_version" not in data:
        return ReportSubmittedV1
    version = data["schema_version"]
    if isinstance(version, int | float) and version in VERSIONS:  # 1.0 is 1, as before
        return VERSIONS[int(version)]
    named = f" {version}" if type(version) is int and abs(version) < 10**6 else ""
    readable = " or ".join(str(v) for v in VERSIONS)
    return RejectionReason(
        loc="schema_version",
        message=f"schema_version{named} is not a version intake reads; send {readable}",
        type="unsupported_version",
    )


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
