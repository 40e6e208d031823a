"""Intake's HTTP API: `POST /v1/reports` takes the same JSON as the Kafka topic.

The caller needs an API key with the `submit` scope, and files reports for the one source
the key is bound to only: a report naming another source is answered 403 and neither stored
nor published, so one system cannot file, or block, report ids under another's name.
Requests are rate-limited per key and per client address (see
:mod:`helpline_shared.webapi`).

A valid report is published onto `helpline.reports.submitted` (acknowledged by the broker)
and answered 202 with its case id; the intake consumer then stores it exactly as it does
reports from other systems, so both paths share one deduplication. A refusal is stored and
published on `helpline.reports.rejected` (see `submission`) and answered 422 with every
reason, 413 for a body over the size limit (not read further), or 409 with RFC 9457
problem details when other content is already stored under its `(source, report_id)`.
The OpenAPI document (`/openapi.json`) declares the report (version 1 or 2) as the body.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# definition time, and their dependencies name local objects.

import uuid
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field, TypeAdapter
from pydantic_core import from_json
from starlette.responses import JSONResponse, Response

from helpline_intake.submission import Handover, Refused, read_capped
from helpline_intake.usecase import case_id_for
from helpline_intake.validation import MAX_MESSAGE_BYTES, too_large_body, validate_report
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Database
from helpline_shared.events import RejectionReason, ReportSubmittedV1, ReportSubmittedV2
from helpline_shared.webapi import (
    AUTH_RESPONSES,
    Access,
    add_schemas,
    new_api,
    problem,
    problem_response,
)

WRONG_TYPE = RejectionReason(
    loc="", message="send Content-Type: application/json", type="content_type"
)

URL_RULES = (
    "An absolute http or https URL as a browser reads it (the WHATWG URL Standard): no "
    "user name or password before the host, a valid host name (labels of 1-63 characters, "
    "at most 253 in all) or IP address, a valid port; at most 2048 characters once "
    "surrounding whitespace is trimmed."
)


# The document's example request: a valid version 1 report (checked in the tests).
REPORT_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "source": "partner-web-form",
    "report_id": "form-2024-000123",
    "reporter": {
        "name": "A. Teacher",
        "email": "a.teacher@school.example",
        "role": "designated safeguarding lead",
    },
    "organisation": "Oakfield Primary School",
    "description": "A TikTok account is impersonating our head teacher.",
    "urls": ["https://www.tiktok.com/@fake_head/video/7301234567890123456"],
    "issue_types": ["impersonation"],
}


class Accepted(BaseModel):
    """A report taken: published for intake, which opens (or has opened) its case."""

    status: Literal["accepted"]
    case_id: uuid.UUID = Field(
        description="The case's id, derived from (source, report_id): the same on a resubmit."
    )


class Rejected(BaseModel):
    """A report refused, with every reason; stored and published as a rejection."""

    status: Literal["rejected"]
    rejection_id: uuid.UUID
    errors: list[RejectionReason]


def refused(refusal: Refused) -> Response:
    event = refusal.event
    if refusal.status == 409:
        return conflict_problem(refusal)
    body = Rejected(status="rejected", rejection_id=event.event_id, errors=list(event.reasons))
    return JSONResponse(body.model_dump(mode="json"), status_code=refusal.status)


def conflict_problem(refusal: Refused) -> Response:
    """RFC 9457 problem details for a conflicting resubmission."""
    event = refusal.event
    return problem(
        409,
        "Another report is stored under this source and report_id",
        event.reasons[0].message,
        slug="conflict",
        rejection_id=str(event.event_id),
        errors=[r.model_dump() for r in event.reasons],
    )


def wrong_source(key: KeyInfo) -> Response:
    return problem(
        403,
        "Key submits for another source",
        f"this key submits for source {key.source!r} only; key {key.key_id}",
        slug="wrong-source",
        key_id=key.key_id,
        key_source=key.source,
    )


def _named_source(raw: bytes) -> str | None:
    """The `source` a body names, if it is a JSON object with a string source."""
    try:
        data = from_json(raw)
    except ValueError:
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source.strip() or None if isinstance(source, str) else None


def _report_schema() -> dict[str, Any]:
    """The request body's schema: report version 1 or 2, with the URL rules stated."""
    return TypeAdapter(ReportSubmittedV1 | ReportSubmittedV2).json_schema(
        ref_template="#/components/schemas/{model}"
    )


# What every URL the model takes starts with (WHATWG also reads `https:host` and
# `https:\\host`, so no slashes are required); the rest of the rules are in words.
URL_PATTERN = r"^\s*[Hh][Tt][Tt][Pp][Ss]?:"


def _with_url_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """The report schemas with each URL's rules stated: the model's maxLength, the scheme
    as a pattern, at least one character, and the whole rule in words."""
    for model in schema.get("$defs", {}).values():
        urls = model.get("properties", {}).get("urls")
        if urls is not None:
            urls["items"].update(description=URL_RULES, pattern=URL_PATTERN, minLength=1)
    return schema


def build_api(broker: KafkaBroker, db: Database, access: Access) -> FastAPI:
    """Intake's keyed API (see the module doc)."""
    handover = Handover(broker, db)
    api = new_api(
        "Helpline intake",
        "Reports from other systems, as JSON, with an API key of the `submit` scope bound "
        "to the report's source. Every refusal is stored and published with its reasons.",
    )
    schema = _with_url_rules(_report_schema())
    add_schemas(api, schema.pop("$defs", {}))

    @api.post(
        "/v1/reports",
        status_code=202,
        summary="Submit a report",
        response_model=Accepted,
        responses={
            **AUTH_RESPONSES,
            403: problem_response(
                "The key lacks the submit scope, or is bound to another source than the report's."
            ),
            409: problem_response("Other content is already stored under this report id."),
            413: {"model": Rejected, "description": f"Body over {MAX_MESSAGE_BYTES} bytes."},
            422: {"model": Rejected, "description": "Invalid report: every reason is listed."},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "A report, version 1 or 2 (`schema_version`).",
                "content": {"application/json": {"schema": schema, "example": REPORT_EXAMPLE}},
            }
        },
    )
    async def submit(
        request: Request, key: Annotated[KeyInfo, Depends(access.require("submit"))]
    ) -> Response:
        """Publish a valid report for intake (202), or store and publish its refusal."""
        raw = await read_capped(request)
        if raw is None:
            return refused(await handover.refuse(None, too_large_body(), "http", 413))
        named = _named_source(raw)
        if named is not None and named != key.source:
            return wrong_source(key)
        result: ReportSubmittedV1 | list[RejectionReason]
        if "json" not in request.headers.get("content-type", "application/json"):
            result = [WRONG_TYPE]
        else:
            result = validate_report(raw)
        if isinstance(result, ReportSubmittedV1) and result.source != key.source:
            return wrong_source(key)
        refusal = await handover.submit(raw, result, "http")
        if refusal is not None:
            return refused(refusal)
        assert isinstance(result, ReportSubmittedV1)
        body = Accepted(status="accepted", case_id=case_id_for(result))
        return JSONResponse(body.model_dump(mode="json"), status_code=202)

    return api
