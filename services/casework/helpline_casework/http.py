"""Casework's HTTP API (FastAPI, `/openapi.json`); every path needs an API key.

- `GET /v1/cases/{case_id}` (`read`): the case. The reporter's contact details come with
  it for a key with the `practitioner` scope, never for a `read`-only key;
  `?contacts=false` leaves them out for a practitioner too (a screen that does not need
  them), and `?contacts=true` with a key lacking `practitioner` is a 403.
- `GET /v1/cases?source=S&report_id=R` or `?reference=HL-XXXX-XXXX` (`read`): that case
  (404 if none); otherwise the list filtered by `state`, `urgency`, `platform`, `overdue`,
  `limit` (at most 200) and `offset`, newest first.
- `GET /v1/queue` (`read`): escalations waiting for a person, most pressing first, filtered
  by `reason` (part of it), `platform`, `urgency`, `min_age_s`.
- `POST /v1/escalations/{escalation_id}/actions` (`practitioner`): record an action; 202
  with the command id once it is stored and bound for the escalator (see
  :mod:`helpline_casework.actions`); 404, 409 or 422 problem details when refused.
- `POST /v1/cases/{case_id}/retriage` (`practitioner`): override the triage decision; 202.

Refusals are RFC 9457 problem details; a malformed path id, query or body is FastAPI's
422. A POST's body is read only after its key is accepted (a caller without one gets the
401, whatever it sends) and never past `MAX_BODY_BYTES` (413).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# definition time, and their dependencies name local objects.

import uuid
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from helpline_casework import queries
from helpline_casework.actions import ActionRefused, ActionRequest, Actions, RetriageRequest
from helpline_casework.views import CaseSummary, CaseView, QueueItem
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Database
from helpline_shared.events import EscalationState, Urgency
from helpline_shared.webapi import (
    AUTH_RESPONSES,
    Access,
    ProblemError,
    add_schemas,
    new_api,
    problem,
    problem_response,
)

MAX_BODY_BYTES = 64 * 1024  # an action's or a re-triage's JSON, whatever its note holds
_Body = TypeVar("_Body", bound=BaseModel)
# Query text that PostgreSQL can hold (no NUL) and a person could have typed.
_TEXT = r"^[^\x00]*$"
CaseId = Annotated[uuid.UUID, Path(description="The case's id (a UUID).")]
Text = Annotated[str | None, Query(max_length=200, pattern=_TEXT)]


class CommandAccepted(BaseModel):
    """An action accepted: stored, shown in the case as pending, and bound for the service
    that applies it."""

    command_id: uuid.UUID
    status: Literal["pending"] = "pending"
    case_id: uuid.UUID | None = Field(None, description="The case it was recorded on.")


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_response("No such case or escalation is known (yet).")
}
_BAD_QUERY: dict[int | str, dict[str, Any]] = {
    400: problem_response("The query's parameters do not go together.")
}
_REFUSED: dict[int | str, dict[str, Any]] = {
    404: problem_response("No such escalation or case is known."),
    409: problem_response("Its current state does not allow this action."),
    422: {
        "description": "The request is malformed (FastAPI's validation errors, "
        "`application/json`), or a field the action needs is missing or one it does not "
        "take is given (problem details).",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}},
            **problem_response("")["content"],
        },
    },
    413: problem_response(f"The body is over {MAX_BODY_BYTES} bytes (not read further)."),
    415: problem_response("The body is declared as something other than JSON."),
}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the required JSON body, read by `_body`."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


async def _body(request: Request, model: type[_Body]) -> _Body:
    """The request's JSON body as `model`. Read in the handler, so only once the key was
    accepted: a caller without one gets its 401 whatever it sends, and no body is read
    past MAX_BODY_BYTES (413). A body that is not the model is FastAPI's 422, `body` first
    in each error's `loc`; one declared as another media type is a 415 problem."""
    media_type = request.headers.get("content-type", "application/json").split(";")[0]
    if "json" not in media_type.lower():
        raise ProblemError(
            problem(
                415,
                "Unsupported media type",
                "send the body as JSON with Content-Type: application/json",
                slug="unsupported-media-type",
            )
        )
    too_large = ProblemError(
        problem(
            413,
            "Body too large",
            f"the body may hold at most {MAX_BODY_BYTES} bytes",
            slug="too-large",
        )
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    try:
        return model.model_validate_json(bytes(body))
    except ValidationError as exc:
        # The input is not echoed: it may not be text at all (bytes that are not UTF-8 could
        # not be encoded into the answer) and a practitioner's note is not worth repeating.
        errors = [
            {**{k: v for k, v in e.items() if k != "input"}, "loc": ("body", *e["loc"])}
            for e in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None


def _not_found(detail: str) -> ProblemError:
    return ProblemError(problem(404, "Not found", detail, slug="not-found"))


def _refused(exc: ActionRefused) -> ProblemError:
    titles = {404: "Not found", 409: "Not possible in this state", 422: "Incomplete action"}
    slugs = {404: "not-found", 409: "conflict", 422: "incomplete-action"}
    return ProblemError(
        problem(
            exc.status,
            titles.get(exc.status, "Refused"),
            exc.detail,
            slug=slugs.get(exc.status, "refused"),
        )
    )


def build_api(db: Database, access: Access, actions: Actions) -> FastAPI:
    api = new_api(
        "helpline casework",
        "Every case with its triage decisions, escalations, attempts and practitioners' "
        "actions; the queue of escalations waiting for a person; recording actions.",
    )
    for model in (ActionRequest, RetriageRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        add_schemas(api, {**schema.pop("$defs", {}), model.__name__: schema})
    read = Depends(access.require("read"))
    practitioner = Depends(access.require("practitioner"))

    @api.get(
        "/v1/cases/{case_id}",
        response_model=CaseView,
        response_model_exclude_none=False,
        responses={**AUTH_RESPONSES, **_NOT_FOUND},
        summary="One case",
    )
    async def get_case(
        case_id: CaseId,
        key: Annotated[KeyInfo, read],
        contacts: Annotated[
            bool | None,
            Query(
                description="The reporter's details: by default included for a "
                "practitioner key and never for another; true requires practitioner."
            ),
        ] = None,
    ) -> CaseView:
        with_contacts = _check_contacts(key, contacts)
        async with db.pool.acquire() as conn:
            case = await queries.get_case(conn, case_id, contacts=with_contacts)
        if case is None:
            raise _not_found(f"no case {case_id} is known")
        return case

    @api.get(
        "/v1/cases",
        response_model=CaseView | list[CaseSummary],
        responses={**AUTH_RESPONSES, **_NOT_FOUND, **_BAD_QUERY},
        summary="A case by its publisher's id or its reference, or a filtered list",
    )
    async def list_cases(
        *,
        key: Annotated[KeyInfo, read],
        source: Text = None,
        report_id: Text = None,
        reference: Annotated[
            str | None, Query(max_length=40, pattern=_TEXT, examples=["HL-0A1B-2C3D"])
        ] = None,
        contacts: bool | None = None,
        state: EscalationState | None = None,
        urgency: Urgency | None = None,
        platform: Annotated[str | None, Query(max_length=100, pattern=_TEXT)] = None,
        overdue: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Any:
        with_contacts = _check_contacts(key, contacts)
        if (source is None) != (report_id is None):
            raise ProblemError(
                problem(
                    400,
                    "Incomplete lookup",
                    "give source and report_id together",
                    slug="bad-request",
                )
            )
        async with db.pool.acquire() as conn:
            if source is not None and report_id is not None:
                case = await queries.find_case(
                    conn, source=source, report_id=report_id, contacts=with_contacts
                )
                if case is None:
                    raise _not_found(f"no case is known for report {report_id!r} of {source!r}")
                return case
            if reference is not None:
                found = await queries.by_reference(conn, reference)
                case = None
                if found is not None:
                    case = await queries.get_case(conn, found, contacts=with_contacts)
                if case is None:
                    raise _not_found(f"no case is known with reference {reference!r}")
                return case
            f = queries.CaseFilters(
                state=state,
                urgency=urgency,
                platform=platform,
                overdue=overdue,
                limit=limit,
                offset=offset,
            )
            return await queries.list_cases(conn, f)

    @api.get(
        "/v1/queue",
        response_model=list[QueueItem],
        responses={**AUTH_RESPONSES},
        summary="Escalations waiting for a person, most pressing first",
    )
    async def get_queue(
        *,
        key: Annotated[KeyInfo, read],
        reason: Text = None,
        platform: Annotated[str | None, Query(max_length=100, pattern=_TEXT)] = None,
        urgency: Urgency | None = None,
        min_age_s: Annotated[int | None, Query(ge=0, le=10 * 365 * 86400)] = None,
        limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 100,
    ) -> list[QueueItem]:
        f = queries.QueueFilters(
            reason=reason, platform=platform, urgency=urgency, min_age_s=min_age_s, limit=limit
        )
        async with db.pool.acquire() as conn:
            return await queries.queue(conn, f)

    @api.post(
        "/v1/escalations/{escalation_id}/actions",
        status_code=202,
        response_model=CommandAccepted,
        responses={**AUTH_RESPONSES, **_REFUSED},
        summary="Record a practitioner's action on an escalation",
        openapi_extra=_json_body(ActionRequest),
    )
    async def act(
        escalation_id: Annotated[uuid.UUID, Path(description="The escalation's id.")],
        request: Request,
        key: Annotated[KeyInfo, practitioner],
    ) -> CommandAccepted:
        req = await _body(request, ActionRequest)
        try:
            command_id = await actions.act(key, escalation_id, req)
        except ActionRefused as exc:
            raise _refused(exc) from None
        async with db.pool.acquire() as conn:  # the case it was recorded on, as stored
            case_id = await conn.fetchval(
                "SELECT case_id FROM casework.commands WHERE command_id = $1", command_id
            )
        return CommandAccepted(command_id=command_id, case_id=case_id)

    @api.post(
        "/v1/cases/{case_id}/retriage",
        status_code=202,
        response_model=CommandAccepted,
        responses={**AUTH_RESPONSES, **_REFUSED},
        summary="Override a case's triage decision",
        openapi_extra=_json_body(RetriageRequest),
    )
    async def retriage(
        case_id: CaseId, request: Request, key: Annotated[KeyInfo, practitioner]
    ) -> CommandAccepted:
        req = await _body(request, RetriageRequest)
        try:
            command_id = await actions.retriage(key, case_id, req)
        except ActionRefused as exc:
            raise _refused(exc) from None
        return CommandAccepted(command_id=command_id, case_id=case_id)

    return api


def _check_contacts(key: KeyInfo, contacts: bool | None) -> bool:
    """Whether to include the reporter's details: asked for (or, unasked, the key may)."""
    if contacts is None:
        return key.allows("practitioner")
    if contacts and not key.allows("practitioner"):
        raise ProblemError(
            problem(
                403,
                "Key lacks the needed scope",
                f"contacts=true needs the 'practitioner' scope; key {key.key_id} has "
                f"{', '.join(sorted(key.scopes))}",
                slug="forbidden",
                needed_scope="practitioner",
                key_id=key.key_id,
            )
        )
    return contacts
