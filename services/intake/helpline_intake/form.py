"""A plain web form for people: `GET /report` shows it, `POST /report` submits it.

The form posts ordinary form fields; they become the same JSON report other systems
publish, validated and published the same way as `POST /v1/reports`: version 2 when the
reporter answered whether they already reported it to the platform (with when, the
platform's answer and its reference), else version 1. Each form carries a
fresh hidden `report_id`, so pressing submit twice opens one case, not two.
"""

from __future__ import annotations

import html
import json
import uuid
from urllib.parse import parse_qs

from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp

from helpline_intake.submission import Handover, Refused, method_not_allowed, read_capped
from helpline_intake.usecase import case_id_for
from helpline_intake.validation import too_large_body, validate_report
from helpline_shared.db import Database
from helpline_shared.events import ReportSubmittedV1
from helpline_shared.service import endpoint

HARM_CHOICES = [
    ("online_reputation", "Online reputation / defamation"),
    ("bullying_harassment", "Bullying or harassment"),
    ("impersonation", "Impersonation (fake account)"),
    ("school_branding_misuse", "Misuse of school branding"),
    ("privacy_images_doxxing", "Images shared without consent / personal details"),
    ("threats_risk_to_life", "Threats, risk to life, self-harm"),
]

ANSWER_CHOICES = [
    ("no_answer_yet", "No answer yet"),
    ("content_removed", "They removed it"),
    ("content_restricted", "They restricted it"),
    ("no_violation_found", "They said it breaks no rules"),
    ("refused_other_reason", "They refused for another reason"),
]

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Report harmful content</title></head><body>
<h1>Report harmful content</h1>{body}</body></html>"""


def _form(report_id: str, errors: list[str]) -> str:
    problems = "".join(f"<li>{html.escape(e)}</li>" for e in errors)
    answers = "".join(f'<option value="{v}">{label}</option>' for v, label in ANSWER_CHOICES)
    choices = "".join(
        f'<label><input type="checkbox" name="issue_types" value="{v}"> {label}</label><br>'
        for v, label in HARM_CHOICES
    )
    return f"""{f'<ul class="errors">{problems}</ul>' if problems else ""}
<form method="post" action="/report">
<input type="hidden" name="report_id" value="{html.escape(report_id)}">
<p><label>Your name <input name="name" required></label></p>
<p><label>Your email <input name="email" type="email" required></label></p>
<p><label>Your role <input name="role"></label></p>
<p><label>School or organisation <input name="organisation"></label></p>
<p><label>What is happening, and why is it harmful?<br>
<textarea name="description" rows="6" cols="60" required></textarea></label></p>
<p><label>Links to the content, one per line<br>
<textarea name="urls" rows="4" cols="60" required></textarea></label></p>
<fieldset><legend>What kind of harm (optional)</legend>{choices}</fieldset>
<fieldset><legend>Have you already reported it to the platform?</legend>
<label><input type="radio" name="reported_to_platform" value="yes"> Yes</label>
<label><input type="radio" name="reported_to_platform" value="no"> No</label><br>
<label>If so, on <input type="date" name="reported_on"></label><br>
<label>What did the platform answer? <select name="platform_answer">
<option value="">(choose)</option>{answers}</select></label><br>
<label>Their reference, if they gave one <input name="platform_reference"></label>
</fieldset>
<p><button type="submit">Send report</button></p></form>"""


def to_report(fields: dict[str, list[str]]) -> bytes:
    def one(name: str) -> str | None:
        value = (fields.get(name) or [""])[0].strip()
        return value or None

    report = {
        "schema_version": 1,
        "source": "web-form",
        "report_id": one("report_id") or str(uuid.uuid4()),
        "reporter": {"name": one("name"), "email": one("email"), "role": one("role")},
        "organisation": one("organisation"),
        "description": one("description"),
        "urls": [u.strip() for u in (one("urls") or "").splitlines() if u.strip()],
        "issue_types": fields.get("issue_types", []),
    }
    answered = one("reported_to_platform")
    if answered is not None:  # asked and answered: version 2 carries the answer
        on = one("reported_on")
        report["schema_version"] = 2
        report["prior_report"] = {
            "reported_to_platform": answered == "yes",
            "reported_at": f"{on}T00:00:00Z" if on else None,
            "platform_answer": one("platform_answer"),
            "platform_reference": one("platform_reference"),
        }
    return json.dumps(report).encode()


def _refused_page(refusal: Refused, report_id: str, top: str = "") -> Response:
    errors = [f"{r.loc or 'report'}: {r.message}" for r in refusal.event.reasons]
    reference = f"<p>Not sent: reference <code>{refusal.event.event_id}</code>.</p>{top}"
    return HTMLResponse(PAGE.format(body=reference + _form(report_id, errors)), refusal.status)


def build_form_routes(broker: KafkaBroker, db: Database) -> list[tuple[str, ASGIApp]]:
    handover = Handover(broker, db)

    async def report(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(PAGE.format(body=_form(str(uuid.uuid4()), [])))
        if request.method != "POST":
            return method_not_allowed("GET, POST")
        body = await read_capped(request)
        if body is None:
            too_large = await handover.refuse(None, too_large_body(), "form", 413)
            return _refused_page(too_large, str(uuid.uuid4()), "<p>That report is too large.</p>")
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=False)
        raw = to_report(fields)
        result = validate_report(raw)
        refusal = await handover.submit(raw, result, "form")
        if refusal is not None:
            return _refused_page(refusal, (fields.get("report_id") or [str(uuid.uuid4())])[0])
        assert isinstance(result, ReportSubmittedV1)
        case = html.escape(str(case_id_for(result)))
        return HTMLResponse(
            PAGE.format(body=f"<p>Thank you. Your report is case <code>{case}</code>.</p>"), 202
        )

    return [("/report", endpoint(report))]
