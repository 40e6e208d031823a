"""The public report form for people: `GET /report` shows it, `POST /report` submits it,
`GET /static/helpline.css` serves the one stylesheet of every page.

The form posts ordinary form fields; they become the same JSON report other systems
publish, validated and published the same way as `POST /v1/reports`: version 2 when the
reporter answered whether a child is affected or whether they already reported it to the
platform, else version 1. Each form carries a fresh hidden `report_id`, so pressing submit
twice opens one case, not two; the thank-you page shows the case's short reference
(`HL-XXXX-XXXX`, see `events.case_reference`) with the case id beside it.

No API key is needed; instead, in this order, a POST is:
- counted against its client address (`settings.form_rate_limit`): past it, a 429 page with
  `Retry-After`, nothing read further, stored or published;
- refused with a 403 page unless it carries the signed double-submit CSRF token of the
  `helpline_report_csrf` cookie (see `websession`): nothing stored or published, and the
  page offers the form again, filled in, with a fresh token. The cookie is the form's own,
  not the practitioners' pages' `helpline_csrf`: cookies ignore ports, so where both are
  served on one host (as in `helpline dev`) opening one never spoils the other's forms;
- refused with the form and its errors unless the reporter consented to the privacy notice:
  nothing stored or published (the details of someone who did not consent are not kept);
- then handed over as `POST /v1/reports` does (a refusal is stored and published on
  `helpline.reports.rejected`, answered 422 or 413).
Every error page keeps everything the person typed and names fields in words.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import jinja2
from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp

from helpline_intake.submission import Handover, method_not_allowed, read_capped
from helpline_intake.usecase import case_id_for
from helpline_intake.validation import too_large_body, validate_report
from helpline_shared.db import Database
from helpline_shared.events import RejectionReason, ReportSubmittedV1, case_reference
from helpline_shared.service import endpoint
from helpline_shared.settings import Settings
from helpline_shared.webapi import RateLimiter, client_address
from helpline_shared.websession import Sessions

HARM_CHOICES = [
    ("online_reputation", "Damaging someone's reputation (lies, defamation)"),
    ("bullying_harassment", "Bullying or harassment"),
    ("impersonation", "Impersonation (a fake account of a person or the school)"),
    ("school_branding_misuse", "Misuse of the school's name or logo"),
    ("privacy_images_doxxing", "Images shared without consent, or personal details"),
    ("child_sexual_imagery", "Sexual images of someone under 18"),
    ("threats_risk_to_life", "Threats or a risk to someone's life"),
    ("self_harm", "Self-harm or suicide"),
    ("hate", "Hate (race, religion, disability, sexuality, gender)"),
    ("scams", "A scam or fraud"),
    ("other", "Something else"),
]

ANSWER_CHOICES = [
    ("no_answer_yet", "No answer yet"),
    ("content_removed", "They removed it"),
    ("content_restricted", "They restricted it"),
    ("no_violation_found", "They said it breaks no rules"),
    ("refused_other_reason", "They refused for another reason"),
]

CHILD_CHOICES = [("yes", "Yes"), ("no", "No"), ("not_sure", "Not sure")]
CHILD_AFFECTED: dict[str, bool | None] = {"yes": True, "no": False, "not_sure": None}

# Each form field in words: the label an error names, and the field's anchor on the page.
LABELS = {
    "name": "Your name",
    "email": "Your email address",
    "role": "Your role",
    "organisation": "School or organisation",
    "description": "What is happening",
    "urls": "Links to the content",
    "child_affected": "Is a child affected",
    "issue_types": "What kind of harm",
    "reported_to_platform": "Have you already reported it",
    "reported_on": "When you reported it",
    "platform_answer": "What the platform answered",
    "platform_reference": "The platform's reference",
    "consent": "Your consent",
    "": "Your report",
}
ANCHORS = {
    "child_affected": "f-child_affected-yes",
    "issue_types": f"f-issue_types-{HARM_CHOICES[0][0]}",
    "reported_to_platform": "f-reported_to_platform-yes",
    "consent": "f-consent-yes",
    "": "main",
}
# Where a reason's `loc` in the report points on the form.
LOC_FIELDS = {
    "reporter.name": "name",
    "reporter.email": "email",
    "reporter.role": "role",
    "reporter": "name",
    "organisation": "organisation",
    "description": "description",
    "urls": "urls",
    "issue_types": "issue_types",
    "child_affected": "child_affected",
    "prior_report": "reported_to_platform",
    "prior_report.reported_to_platform": "reported_to_platform",
    "prior_report.reported_at": "reported_on",
    "prior_report.platform_answer": "platform_answer",
    "prior_report.platform_reference": "platform_reference",
}
MISSING = {
    "name": "Enter your name",
    "email": "Enter your email address, so we can contact you about this report",
    "description": "Say what is happening and why it is harmful",
    "urls": "Give at least one link to the content",
}
# The form's own CSRF cookie (see the module doc for why not websession.CSRF_COOKIE).
REPORT_CSRF_COOKIE = "helpline_report_csrf"
EMPTY_TYPES = {"missing", "string_type", "string_too_short", "too_short"}
# A choice the form offers, sent as something else (only a crafted POST does that).
CHOICE_TYPES = {"literal_error", "enum", "bool_parsing", "bool_type"}


@dataclass(frozen=True)
class FieldError:
    field: str
    text: str  # "Links to the content, line 2: ..."
    message: str  # shown beside the field

    @property
    def anchor(self) -> str:
        return ANCHORS.get(self.field, f"f-{self.field}")


@dataclass(frozen=True)
class Submitted:
    """What the person typed: every field as text, ticked boxes as lists."""

    fields: dict[str, list[str]]
    url_lines: list[int] = field(default_factory=list)  # form line of each link, in order

    def one(self, name: str) -> str | None:
        value = (self.fields.get(name) or [""])[0].strip()
        return value or None

    def values(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.fields.items() if v and k != "issue_types"}


def read_form(body: bytes) -> Submitted:
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    text = (fields.get("urls") or [""])[0]
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return Submitted(fields, lines)


def to_report(fields: dict[str, list[str]]) -> bytes:
    """The report as JSON bytes, as another system would publish it."""
    one = Submitted(fields).one
    report: dict[str, Any] = {
        "schema_version": 1,
        "source": "web-form",
        "report_id": one("report_id") or str(uuid.uuid4()),
        "reporter": {"name": one("name"), "email": one("email"), "role": one("role")},
        "organisation": one("organisation"),
        "description": one("description"),
        "urls": [u.strip() for u in (one("urls") or "").splitlines() if u.strip()],
        "issue_types": [v for v in fields.get("issue_types", []) if v],
    }
    child = one("child_affected")
    if child is not None:  # asked and answered, "not sure" included: version 2
        report["schema_version"] = 2
        report["child_affected"] = CHILD_AFFECTED.get(child, child)
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


def _person_message(reason: RejectionReason, form_field: str, typed: str | None) -> str:
    """The reason as a person reads it, `typed` being what they typed in the field (for a
    link, its line). Never the validator's own wording when a person can cause it."""
    message = reason.message.removeprefix("Value error, ")
    limit = re.search(r"at most (\d+)", message)
    if reason.type in EMPTY_TYPES and form_field in MISSING:
        return MISSING[form_field]
    if form_field == "email":
        return "Enter an email address like name@school.example"
    if form_field == "reported_on":
        return "Enter the date as shown, for example 18/11/2026"
    if reason.loc == "prior_report":
        return "You answered No: answer Yes, or leave the date, answer and reference empty"
    if form_field == "urls" and typed is not None and "://" not in typed:
        return (
            "This link must start with https:// (copy it from the browser's address bar "
            "or the app's share button)"
        )
    if reason.type == "too_long" and form_field == "urls" and limit:
        return (
            f"Send at most {limit.group(1)} links in one report, and the others in another report"
        )
    if reason.type == "string_too_long" and limit:
        has = f" (it has {len(typed):,})" if typed is not None else ""
        return f"Shorten this to {int(limit.group(1)):,} characters or fewer{has}"
    if form_field == "urls" and message.split(" ", 1)[0] in ("is", "must", "has"):
        return f"This link {message}"  # the reason never repeats the link itself
    if reason.type in CHOICE_TYPES:
        return "Choose one of the answers shown"
    if reason.type == "conflict":
        return (
            "This form was already sent with other details. Open the form again to send "
            "a new report"
        )
    return message[:1].upper() + message[1:]


def field_errors(reasons: list[RejectionReason], form: Submitted) -> list[FieldError]:
    """Each reason in words: which field (by its label, a link by its line), and what to do.
    Never a path such as `urls.0`, nor the validator's wording for what a person typed."""
    out: list[FieldError] = []
    lines = (form.fields.get("urls") or [""])[0].splitlines()
    for reason in reasons:
        parts = reason.loc.split(".")
        line = None
        if parts[0] in ("urls", "issue_types") and len(parts) > 1 and parts[1].isdigit():
            line, parts = int(parts[1]), parts[:1]
        loc = ".".join(parts)
        name = LOC_FIELDS.get(loc) or LOC_FIELDS.get(parts[0], "")
        label = LABELS[name]
        typed = form.one(name) if name else None
        if name == "urls":
            typed = None
            if line is not None and line < len(form.url_lines):
                label = f"{label}, line {form.url_lines[line]}"
                typed = lines[form.url_lines[line] - 1].strip()
        message = _person_message(reason, name, typed)
        out.append(FieldError(name, f"{label}: {message}", message))
    return out


def consent_error() -> FieldError:
    message = "Tick the box to agree to how we use your details, or we cannot take your report"
    return FieldError("consent", f"{LABELS['consent']}: {message}", message)


@dataclass(frozen=True)
class Notice:
    title: str
    lines: list[str]
    css: str = "notice-danger"
    reference: str | None = None


class Pages:
    """Renders the form's pages from the package's templates (HTML-escaped by default)."""

    def __init__(self, stylesheet: str) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("helpline_intake", "templates"),
            autoescape=True,
            extensions=["jinja2.ext.do"],
            undefined=jinja2.StrictUndefined,
        )
        self._stylesheet = stylesheet

    def form(
        self,
        *,
        report_id: str,
        csrf_token: str,
        form: Submitted | None = None,
        errors: Sequence[FieldError] = (),
        notice: Notice | None = None,
    ) -> str:
        form = form or Submitted({})
        first: dict[str, str] = {}
        for e in errors:
            first.setdefault(e.field, e.message)
        return self._env.get_template("report_form.html").render(
            stylesheet=self._stylesheet,
            report_id=report_id,
            csrf_token=csrf_token,
            values=form.values(),
            issue_types=form.fields.get("issue_types", []),
            errors=list(errors),
            field_errors=first,
            notice=notice,
            harm_choices=HARM_CHOICES,
            answer_choices=ANSWER_CHOICES,
            child_choices=CHILD_CHOICES,
        )

    def thanks(self, case_id: uuid.UUID) -> str:
        return self._env.get_template("report_thanks.html").render(
            stylesheet=self._stylesheet, case_id=str(case_id), reference=case_reference(case_id)
        )


# Pages hold a CSRF token: never cached; no other site may frame them; nothing from elsewhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def stylesheet_route() -> tuple[str, str, ASGIApp]:
    """(path, versioned link, route) of the shared stylesheet: cacheable for a day, with an
    ETag, and linked with its content hash so a new version is fetched at once."""
    css = (resources.files("helpline_shared") / "static" / "helpline.css").read_bytes()
    etag = f'"{hashlib.sha256(css).hexdigest()[:16]}"'
    headers = {
        "Cache-Control": "public, max-age=86400",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
    }

    async def serve(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed("GET, HEAD")
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(css, media_type="text/css; charset=utf-8", headers=headers)

    path = "/static/helpline.css"
    return path, f"{path}?v={etag.strip(chr(34))[:8]}", endpoint(serve)


def build_form_routes(
    broker: KafkaBroker, db: Database, settings: Settings | None = None
) -> list[tuple[str, ASGIApp]]:
    """`/report` and `/static/helpline.css`. Without `settings`, the environment's
    (HELPLINE_FORM_RATE_LIMIT, HELPLINE_SESSION_SECRET, HELPLINE_COOKIE_SECURE)."""
    settings = settings or Settings()
    handover = Handover(broker, db)
    sessions = Sessions(settings)
    limiter = RateLimiter()
    css_path, css_link, css_route = stylesheet_route()
    pages = Pages(css_link)

    def page(body: str, status: int, *, csrf_cookie: str | None = None, **headers: str) -> Response:
        response = HTMLResponse(body, status, headers={**PAGE_HEADERS, **headers})
        if csrf_cookie is not None:
            response.set_cookie(REPORT_CSRF_COOKIE, csrf_cookie, **sessions.cookie_kwargs())
        return response

    def fresh_form(status: int, form: Submitted | None = None, **kw: Any) -> Response:
        """The form with a new CSRF pair (its cookie set), filled in with `form`."""
        cookie, token = sessions.csrf_pair()
        report_id = (form.one("report_id") if form else None) or str(uuid.uuid4())
        body = pages.form(report_id=report_id, csrf_token=token, form=form, **kw)
        return page(body, status, csrf_cookie=cookie)

    async def report(request: Request) -> Response:
        if request.method == "GET":
            return fresh_form(200)
        if request.method != "POST":
            return method_not_allowed("GET, POST")
        wait = limiter.hit(f"form:{client_address(request)}", settings.form_rate_limit)
        if wait is not None:
            minutes = max(1, math.ceil(wait / 60))
            notice = Notice(
                "Too many reports from this connection",
                [
                    f"Your report was not sent. Please try again in {minutes} minute"
                    f"{'s' if minutes > 1 else ''}: what you typed is still below.",
                    "If this is urgent, phone the helpline.",
                ],
            )
            body = await read_capped(request)
            form = read_form(body) if body is not None else None
            token = (form.one("csrf_token") if form else None) or ""
            html = pages.form(
                report_id=(form.one("report_id") if form else None) or str(uuid.uuid4()),
                csrf_token=token,
                form=form,
                notice=notice,
            )
            return page(html, 429, **{"Retry-After": str(max(1, math.ceil(wait)))})
        body = await read_capped(request)
        cookie = request.cookies.get(REPORT_CSRF_COOKIE)
        if body is None:
            if not cookie:  # not even our cookie: not from our form
                return refused_csrf(None)
            too_large = await handover.refuse(None, too_large_body(), "form", 413)
            notice = Notice(
                "Your report is too large",
                ["Shorten the description or send fewer links at a time, then send it again."],
                reference=str(too_large.event.event_id),
            )
            return fresh_form(too_large.status, notice=notice)
        form = read_form(body)
        if not sessions.csrf_ok(cookie, form.one("csrf_token")):
            return refused_csrf(form)
        token = form.one("csrf_token") or ""
        raw = to_report(form.fields)
        result = validate_report(raw)
        if form.one("consent") != "yes":
            errors = [consent_error()]
            if not isinstance(result, ReportSubmittedV1):
                errors = field_errors(result, form) + errors
            html = pages.form(
                report_id=form.one("report_id") or str(uuid.uuid4()),
                csrf_token=token,
                form=form,
                errors=errors,
            )
            return page(html, 422)
        refusal = await handover.submit(raw, result, "form")
        if refusal is not None:
            reasons = refusal.event.reasons
            html = pages.form(
                report_id=form.one("report_id") or str(uuid.uuid4()),
                csrf_token=token,
                form=form,
                errors=field_errors(list(reasons), form),
                notice=Notice(
                    "Your report was not sent",
                    ["Please correct what is listed below and send it again."],
                    reference=str(refusal.event.event_id),
                ),
            )
            return page(html, refusal.status)
        assert isinstance(result, ReportSubmittedV1)
        return page(pages.thanks(case_id_for(result)), 202)

    def refused_csrf(form: Submitted | None) -> Response:
        notice = Notice(
            "Your report was not sent: the form's security check failed",
            [
                "This happens when the form was open for a long time, was opened in another "
                "tab, or your browser blocks cookies from this site.",
                "Nothing was sent or kept. Check what you typed below and send it again.",
            ],
        )
        return fresh_form(403, form, notice=notice)

    return [("/report", endpoint(report)), (css_path, css_route)]
