"""The practitioners' pages: sign-in, the queue, a case with its timeline and action forms.

Server-rendered (Jinja2, every value escaped), usable without JavaScript, nothing loaded from
elsewhere: the one stylesheet is served here at `/static/helpline.css`.

Sign-in turns a live key with the `practitioner` scope into a signed session cookie holding
only its key id (`helpline_shared.websession`). Every page checks again that the key is
live, so revoking a key signs its sessions out at their next page. A page without a
session redirects to `/signin`.

Every form carries a CSRF token (signed double submit); a POST without a valid one changes
nothing and gets a 403 page. An action a practitioner records goes through
`actions.Actions`, which stores it and publishes the command: the page redirects (303) back
to the case with a confirmation, or shows the case again with the reason it was refused and
what was typed kept. A command is applied asynchronously, so the case shows it as pending
until the escalator (or triage) reports it applied or refused.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, get_args
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData

from helpline_casework import queries
from helpline_casework.actions import (
    ALLOWED_STATES,
    ActionRefused,
    ActionRequest,
    Actions,
    RetriageRequest,
)
from helpline_casework.views import (
    ActionView,
    CaseView,
    DecisionView,
    EscalationView,
    QueueItem,
)
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Database
from helpline_shared.events import (
    CLOSING_STATES,
    HarmType,
    Route,
    Urgency,
)
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings
from helpline_shared.webapi import Access, client_address
from helpline_shared.websession import CSRF_COOKIE, SESSION_COOKIE, Sessions

# The CSRF token of the current cookie, kept beside it so that every page (and every tab)
# renders the same token instead of rotating the pair on each page view.
CSRF_TOKEN_COOKIE = "helpline_csrf_form"  # noqa: S105 (a cookie name)
MAX_FORM_BYTES = 64 * 1024

HARM_LABELS: dict[str, str] = {
    "online_reputation": "Online reputation or defamation",
    "bullying_harassment": "Bullying or harassment",
    "impersonation": "Impersonation (fake account)",
    "school_branding_misuse": "Misuse of school branding",
    "privacy_images_doxxing": "Images shared without consent, or personal details",
    "child_sexual_imagery": "Sexual imagery of a child",
    "threats_risk_to_life": "Threats or risk to life",
    "self_harm": "Self-harm",
    "hate": "Hate",
    "scams": "Scams",
    "other": "Other",
}
URGENCY_LABELS: dict[str, str] = {"critical": "Critical", "high": "High", "normal": "Normal"}
ROUTE_LABELS: dict[str, str] = {
    "platform": "The platform's notice channel",
    "hotline": "The national hotline",
    "manual": "A practitioner, by hand",
}
DECISION_LABELS: dict[str, str] = {
    "removed": "Removed",
    "disabled": "Disabled or geo-restricted",
    "age_restricted": "Age-restricted",
    "demoted": "Demoted",
    "labelled": "Labelled",
    "no_violation": "No violation found",
    "already_gone": "Already gone",
}
STATE_LABELS: dict[str, str] = {
    "submitted": "Sent to the platform, waiting for its decision",
    "decided": "Decided",
    "failed": "Failed",
    "needs_manual": "Waiting for a practitioner",
    "breached": "Deadline passed with no decision",
    "closed": "Closed as advice only",
    "appealed": "Appealed, waiting for the platform",
    "appeal_decided": "Appeal decided",
    "withdrawn": "Withdrawn after a re-triage",
}
ACTION_LABELS: dict[str, str] = {
    "escalated_by_hand": "Escalated by hand",
    "platform_decision": "Platform decision recorded",
    "advice_only": "Closed as advice only",
    "appeal": "Appeal",
    "retriage": "Re-triage",
}
ACTIVITY_LABELS: dict[str, str] = {
    "submit": "Notice sent",
    "status": "Asked the platform for its decision",
    "lookup": "Checked whether a notice arrived",
    "followup": "Re-notified the platform",
    "appeal": "Appeal sent",
    "withdrawal": "Notice withdrawn",
    "hotline_report": "Reported to the national hotline",
    "practitioner": "Practitioner action",
}
ATTEMPT_RESULTS: dict[str, str] = {
    "ok": "done",
    "retryable": "failed, to be tried again",
    "permanent": "failed for good",
    "lost": "no reply (to be looked up)",
    "refused": "refused",
}
ACTION_RESULTS: dict[str, str] = {
    "pending": "pending",
    "ok": "applied",
    "refused": "refused",
    "retryable": "pending, to be tried again",
    "permanent": "failed",
    "lost": "pending",
}
SIGNIN_REFUSED = {
    "empty": (401, "Enter your practitioner key."),
    "invalid": (401, "That key was not accepted: it is mistyped, unknown or revoked."),
    "scope": (
        403,
        "That key cannot sign in here: it does not have the practitioner scope. Ask an "
        "administrator for a practitioner key.",
    ),
}
SIGNIN_NOTICES = {
    "out": "You have signed out.",
    "ended": "Your sign-in has ended: the key was revoked or no longer has the practitioner "
    "scope. Sign in with a live practitioner key.",
    "expired": "Your sign-in has expired. Sign in again.",
}
CONFIRMATIONS: dict[str, str] = {
    "escalated_by_hand": "Recorded: escalated by hand, with the platform's reference.",
    "platform_decision": "Recorded: the platform's decision.",
    "advice_only": "Recorded: closed as advice only.",
    "appeal": "Recorded: the appeal. It goes to the platform's appeal route.",
    "retriage": "Recorded: the new triage decision.",
}
PENDING_NOTE = " The timeline shows it as pending until it has been applied."
STALE_FORM = (
    "Not recorded: this page's security check no longer holds (the page was open from an "
    "earlier sign-in). Nothing was changed; check what you typed below and send it again."
)


def _now() -> datetime:
    return datetime.now(UTC)


def when(at: datetime | None, *, seconds: bool = False) -> str:
    """A moment as a person reads it, in UTC: `26 Nov 2026 06:30 UTC` (`06:30:15` with
    `seconds`, for a timeline whose steps come seconds apart)."""
    if at is None:
        return "not set"
    return at.astimezone(UTC).strftime(f"%d %b %Y %H:%M{':%S' if seconds else ''} UTC")


def span(delta: timedelta) -> str:
    """A duration in words at two units at most: `2 d 3 h`, `3 h 20 min`, `45 min`."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return "under a minute"


_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


def readable(reason: str | None) -> str | None:
    """A reason as a person reads it: any moment in it (the escalator writes them as ISO
    8601, as in `no decision by its deadline (2026-11-26T07:11:52.47+00:00)`) as `when`
    writes it."""
    if reason is None:
        return None

    def moment(found: re.Match[str]) -> str:
        try:
            return when(datetime.fromisoformat(found.group(0).replace("Z", "+00:00")))
        except ValueError:
            return found.group(0)

    return _ISO_MOMENT.sub(moment, reason)


def due_text(due_at: datetime | None, now: datetime) -> str:
    if due_at is None:
        return "no deadline"
    if due_at <= now:
        return f"{span(now - due_at)} ago ({when(due_at)})"
    return f"in {span(due_at - now)} ({when(due_at)})"


def _local(path: str | None) -> str:
    """`path` if it is a path on this site (for `next=`), else the queue."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/queue"


@dataclass
class FormState:
    """A form as shown again: what was typed, and each field's problem in words."""

    values: dict[str, Any] = field(default_factory=dict)
    field_errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """An action form to show again: which (escalation id, action), and its state."""

    target: tuple[str, str]
    form: FormState


def queue_rows(items: Sequence[QueueItem], now: datetime) -> list[dict[str, Any]]:
    """The queue's rows for the page, in the order given (the query orders them)."""
    return [
        {
            "case_id": item.case_id,
            "escalation_id": item.escalation_id,
            "reference": item.reference,
            "platform": item.platform,
            "hotline": item.route == "hotline",
            "urgency": item.urgency or "unknown",
            "urgency_label": URGENCY_LABELS.get(item.urgency or "", "Not triaged"),
            "reason": readable(item.reason),
            "state_label": STATE_LABELS.get(item.state, item.state),
            "age": span(timedelta(seconds=item.age_s)),
            "due": due_text(item.due_at, now),
            "overdue": item.overdue,
        }
        for item in items
    ]


def person(key_id: str | None, names: Mapping[str, str]) -> str | None:
    """Who acted, as the page names them: the key's name with its id, else the id alone."""
    if key_id is None:
        return None
    name = names.get(key_id)
    return f"{name} (key {key_id})" if name else key_id


def _decision_rows(d: DecisionView, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "revision": d.revision,
        "at": when(d.triaged_at),
        "by": person(d.overridden_by, names),
        "note": d.override_note,
        "harm_types": [HARM_LABELS.get(h, h) for h in d.harm_types],
        "urgency": d.urgency,
        "urgency_label": URGENCY_LABELS[d.urgency],
        "route_label": ROUTE_LABELS[d.route],
        "rules_version": d.rules_version,
        "due": when(d.decision_due_at) if d.decision_due_at else None,
        "rules": [(m.rule_id, m.evidence) for m in d.matches]
        or [(rule, []) for rule in d.rules_fired],
    }


_FORMS: tuple[tuple[str, str, str, str], ...] = (  # action, title, button, note hint
    (
        "escalated_by_hand",
        "Escalated by hand",
        "Record the escalation",
        "How you sent it (the platform's form, email, phone) and anything to follow up.",
    ),
    (
        "platform_decision",
        "The platform decided",
        "Record the decision",
        "How the decision reached you and what the platform said.",
    ),
    (
        "advice_only",
        "Close as advice only",
        "Close as advice only",
        "The advice given, and why no platform decision is sought.",
    ),
    (
        "appeal",
        "Appeal the decision",
        "Send the appeal",
        "Why the content breaks the platform's rules after all.",
    ),
)


ACTION_TITLES = {action: title for action, title, _, _ in _FORMS}


def _offered(e: EscalationView, action: str) -> bool:
    if e.state not in ALLOWED_STATES[action]:
        return False
    return action != "appeal" or e.decision == "no_violation"


def _forms(e: EscalationView, anchor: str, refused: Refusal | None) -> list[dict[str, Any]]:
    """The action forms the escalation's state allows (the service checks again); the
    refused one, if it is one of them, open with what was typed and its problems."""
    forms = []
    for action, title, button, hint in _FORMS:
        if not _offered(e, action):
            continue
        is_refused = refused is not None and refused.target == (str(e.escalation_id), action)
        state = refused.form if refused is not None and is_refused else FormState()
        forms.append(
            {
                "id": f"{anchor}-{action}",
                "action": action,
                "title": title,
                "button": button,
                "note_hint": hint,
                "open": is_refused,
                "typed": state.values,  # not "values": a dict's method in Jinja
                "field_errors": state.field_errors,
            }
        )
    return forms


def timeline(case: CaseView, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Everything that happened to the case in time order: triage decisions, each
    escalation's states, calls to platforms and practitioners' actions."""
    entries: list[tuple[datetime, int, str, str]] = [
        (case.received_at, 0, "Report received", f"from {case.source}")
    ]
    for d in case.decisions:
        who = f"override by {person(d.overridden_by, names)}" if d.overridden_by else "triage"
        entries.append(
            (
                d.triaged_at,
                1,
                f"Triage decision, revision {d.revision}",
                f"{URGENCY_LABELS[d.urgency]}, {ROUTE_LABELS[d.route].lower()} ({who})",
            )
        )
    for a in case.retriages:
        entries.append((a.at, 2, "Re-triage requested", _action_detail(a, names)))
    for e in case.escalations:
        where = f"{e.platform} {e.url}"
        for s in e.states:
            detail = where
            if s.decision:
                detail += f": {DECISION_LABELS.get(s.decision, s.decision)}"
            if s.actor:
                detail += f" (by {person(s.actor, names)})"
            if s.note:
                detail += f"; note: {s.note}"
            entries.append((s.occurred_at, 3, STATE_LABELS.get(s.state, s.state), detail))
        for t in e.attempts:
            outcome = ATTEMPT_RESULTS.get(t.result or "", "no answer")
            if t.http_status is not None:
                outcome += f", HTTP {t.http_status}"
            if t.error:
                outcome += f": {t.error}"
            entries.append(
                (t.started_at, 4, ACTIVITY_LABELS.get(t.kind, t.kind), f"{where}, {outcome}")
            )
        for a in e.actions:
            entries.append(
                (
                    a.at,
                    5,
                    ACTION_LABELS.get(a.action, a.action),
                    f"{where}, {_action_detail(a, names)}",
                )
            )
    entries.sort(key=lambda x: (x[0], x[1]))
    return [
        {"iso": at.isoformat(), "at": when(at, seconds=True), "what": what, "detail": detail}
        for at, _, what, detail in entries
    ]


def _action_detail(a: ActionView, names: Mapping[str, str]) -> str:
    parts = [f"by {person(a.actor, names) or 'unknown'}", ACTION_RESULTS.get(a.result, a.result)]
    if a.platform_reference:
        parts.append(f"reference {a.platform_reference}")
    if a.decision:
        parts.append(DECISION_LABELS.get(a.decision, a.decision))
    if a.error:
        parts.append(f"refused: {a.error}")
    if a.note:
        parts.append(f"note: {a.note}")
    return "; ".join(parts)


_SETTLED = CLOSING_STATES | {"appeal_decided"}


def case_page(
    case: CaseView,
    now: datetime,
    *,
    refused: Refusal | None = None,
    retriage: FormState | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The template's context for a case; `refused` is an action form to show again, open,
    with what was typed, `retriage` the re-triage form's; `names` the names of the keys
    that acted on it, by key id (who acted is shown by name and key id)."""
    names = names or {}
    current = case.decision
    escalations = []
    for n, e in enumerate(case.escalations, start=1):
        anchor = f"e{n}"
        escalations.append(
            {
                "anchor": anchor,
                "escalation_id": e.escalation_id,
                "url": e.url,
                "platform": e.platform,
                "state": e.state,
                "state_label": STATE_LABELS.get(e.state, e.state),
                "reason": readable(e.reason),
                "decision": DECISION_LABELS.get(e.decision, e.decision) if e.decision else None,
                "platform_reference": e.platform_reference,
                # Once decided or closed, when it was due; while open, how long is left.
                "due": when(e.due_at) if e.state in _SETTLED else due_text(e.due_at, now),
                "overdue": e.overdue,
                "attempts": len(e.attempts),
                "followups": e.followups,
                "forms": _forms(e, anchor, refused),
            }
        )
    if retriage is None:
        retriage = FormState(
            values={
                "harm_types": list(current.harm_types) if current else [],
                "urgency": current.urgency if current else "normal",
                "route": current.route if current else "platform",
            }
        )
    reporter = case.reporter
    return {
        "case": {
            "case_id": case.case_id,
            "reference": case.reference,
            "received_at": when(case.received_at),
            "source": case.source,
            "report_id": case.report_id,
            "organisation": case.organisation,
            "description": case.description,
            "urls": case.urls,
            "issue_types": [HARM_LABELS.get(h, h) for h in case.issue_types],
            "child_affected": {True: "Yes", False: "No", None: "Not asked, or not known"}[
                case.child_affected
            ],
            "prior_report": _prior(case),
            "reporter": reporter if reporter is not None and not reporter.erased else None,
            "reporter_absent": "The reporter's details were erased."
            if reporter is not None and reporter.erased
            else "Casework has no contact details for this reporter.",
        },
        "triage": _decision_rows(current, names) if current else None,
        "history": [
            _decision_rows(d, names) for d in reversed(case.decisions) if current and d != current
        ],
        "escalations": escalations,
        "timeline": timeline(case, names),
        "retriage": retriage,
        "decisions": list(DECISION_LABELS.items()),
        "harm_choices": [(h, HARM_LABELS[h]) for h in get_args(HarmType)],
        "urgency_choices": [(u, URGENCY_LABELS[u]) for u in get_args(Urgency)],
        "route_choices": [(r, ROUTE_LABELS[r]) for r in get_args(Route)],
    }


def _prior(case: CaseView) -> str | None:
    p = case.prior_report
    if p is None:
        return None
    if not p.reported_to_platform:
        return "No"
    parts = ["Yes"]
    if p.reported_at:
        parts.append(f"on {p.reported_at:%d %b %Y}")
    if p.platform_answer:
        parts.append(f"answer: {p.platform_answer.replace('_', ' ')}")
    if p.platform_reference:
        parts.append(f"their reference {p.platform_reference}")
    return ", ".join(parts)


_SECURITY_HEADERS = {
    # Nothing from elsewhere, no inline script, forms only to this site, never in a frame.
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages hold reporters' contact details
}
_FILTERS = ("reason", "platform", "urgency", "waiting")
_AGES = (("3600", "1 hour"), ("86400", "1 day"), ("259200", "3 days"), ("604800", "1 week"))


class _Pages:
    """The handlers, sharing the template environment, sessions and the read model."""

    def __init__(
        self,
        db: Database,
        access: Access,
        sessions: Sessions,
        actions: Actions,
        settings: Settings,
    ) -> None:
        self.db = db
        self.access = access
        self.sessions = sessions
        self.actions = actions
        self.settings = settings
        self.templates = Environment(
            loader=PackageLoader("helpline_casework", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        stylesheet = resources.files("helpline_shared") / "static" / "helpline.css"
        self.css = stylesheet.read_text(encoding="utf-8")
        self.log = get_logger("helpline.casework.pages")

    # -- rendering ---------------------------------------------------------------------

    def page(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        who: KeyInfo | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """`template` rendered with the CSRF token of the browser's cookie (a new pair is
        set when it has none that holds)."""
        token, fresh = self._csrf(request)
        context.setdefault("errors", [])
        body = self.templates.get_template(template).render(who=who, csrf_token=token, **context)
        response = HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)
        if fresh is not None:
            response.set_cookie(CSRF_COOKIE, fresh[0], **self.sessions.cookie_kwargs())
            response.set_cookie(CSRF_TOKEN_COOKIE, fresh[1], **self.sessions.cookie_kwargs())
        return response

    def problem(
        self, request: Request, status: int, title: str, *paragraphs: str, who: KeyInfo | None
    ) -> HTMLResponse:
        return self.page(
            request, "problem.html", status=status, who=who, title=title, paragraphs=paragraphs
        )

    def _csrf(self, request: Request) -> tuple[str, tuple[str, str] | None]:
        value = request.cookies.get(CSRF_COOKIE)
        token = request.cookies.get(CSRF_TOKEN_COOKIE)
        if value and token and self.sessions.csrf_ok(value, token):
            return token, None
        value, token = self.sessions.csrf_pair()
        return token, (value, token)

    # -- who is asking -----------------------------------------------------------------

    async def who(self, request: Request, back_to: str) -> KeyInfo | Response:
        """The signed-in practitioner's live key, or a redirect to sign in (the session
        cookie cleared when its key was revoked or lost the practitioner scope)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        key_id = self.sessions.read(cookie)
        if key_id is None:
            return self.to_signin(back_to, "expired" if cookie else None)
        info = await self.access.key(key_id)
        if info is None or "practitioner" not in info.scopes:
            self.log.info("session ended: key no longer live", key_id=key_id)
            return self.to_signin(back_to, "ended")
        return info

    def to_signin(self, back_to: str, notice: str | None) -> Response:
        target = f"/signin?next={quote(_local(back_to), safe='/')}"
        if notice:
            target += f"&notice={notice}"
        response = RedirectResponse(target, status_code=303)
        if notice is not None:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def form(self, request: Request) -> FormData | Response:
        """The posted form if it is small and carries a valid CSRF token; else the page
        that says why (411, 413, 403) and nothing changes."""
        data = await self.read_form(request)
        if isinstance(data, Response):
            return data
        if not self.csrf_valid(request, data):
            return self.csrf_refused(request)
        return data

    async def case_form(
        self, request: Request, case_id: str
    ) -> tuple[FormData, bool, KeyInfo] | Response:
        """A form posted from case `case_id`'s page: the form, whether its CSRF token holds
        and the signed-in practitioner. A form too large or unreadable gets its page (411,
        413); one with no token at all, the 403 page; a sender not signed in, the sign-in
        page if the token holds, else the 403 page. A token that no longer holds from a
        signed-in practitioner is the caller's to answer: nothing changes either way."""
        data = await self.read_form(request)
        if isinstance(data, Response):
            return data
        csrf_valid = self.csrf_valid(request, data)
        if not csrf_valid and not _text(data, "csrf_token"):
            return self.csrf_refused(request)  # no token at all: not from one of our pages
        who = await self.who(request, f"/cases/{case_id}")
        if isinstance(who, Response):
            return who if csrf_valid else self.csrf_refused(request)
        return data, csrf_valid, who

    async def read_form(self, request: Request) -> FormData | Response:
        """The posted form if it is small, its CSRF token not yet checked; else the page
        that says why (411, 413) and nothing changes."""
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return self.problem(
                request,
                411,
                "That form could not be read",
                "Nothing was changed: the browser did not say how long the form was. Send it "
                "again from the page.",
                who=None,
            )
        if int(length) > MAX_FORM_BYTES:
            return self.problem(
                request,
                413,
                "That form is too large",
                "Nothing was changed. Shorten what you typed (a note holds up to 4,000 "
                "characters) and send it again.",
                who=None,
            )
        return await request.form()

    def csrf_valid(self, request: Request, data: FormData) -> bool:
        token = data.get("csrf_token")
        valid = self.sessions.csrf_ok(
            request.cookies.get(CSRF_COOKIE), token if isinstance(token, str) else None
        )
        if not valid:
            self.log.info("form refused: CSRF token missing or wrong", path=request.url.path)
        return valid

    def csrf_refused(self, request: Request) -> HTMLResponse:
        return self.problem(
            request,
            403,
            "This form could not be accepted",
            "It did not carry this site's security token, so nothing was changed. That "
            "happens when a form was sent from another site, when the page was open for "
            "longer than a sign-in lasts, or when cookies are blocked.",
            "Go back, reload the page and send the form again.",
            who=None,
        )

    # -- sign-in -----------------------------------------------------------------------

    def signin_page(
        self, request: Request, *, status: int = 200, error: str | None = None
    ) -> HTMLResponse:
        notice = SIGNIN_NOTICES.get(request.query_params.get("notice", ""))
        return self.page(
            request,
            "signin.html",
            status=status,
            notice=notice,
            next_path=_local(request.query_params.get("next")),
            errors=[("key", error)] if error else [],
        )

    async def signin(self, request: Request) -> Response:
        data = await self.form(request)
        if isinstance(data, Response):
            return data
        wait = self.access.limiter.hit(
            f"signin:{client_address(request)}", self.settings.rate_limit_per_client
        )
        if wait is not None:
            return self.problem(
                request,
                429,
                "Too many sign-in attempts",
                f"Wait {max(1, int(wait))} seconds, then try again.",
                who=None,
            )
        key = data.get("key")
        presented = key.strip() if isinstance(key, str) else ""
        refusal = "empty"
        info = await self.access.verify(presented) if presented else None
        if presented:
            refusal = "invalid" if info is None else "scope"
        if info is None or "practitioner" not in info.scopes:
            status, message = SIGNIN_REFUSED[refusal]
            self.log.info("sign-in refused", why=refusal, key_id=info.key_id if info else None)
            return self.signin_page(request, status=status, error=message)
        next_path = data.get("next")
        response = RedirectResponse(
            _local(next_path if isinstance(next_path, str) else None), status_code=303
        )
        kwargs = self.sessions.cookie_kwargs()
        response.set_cookie(SESSION_COOKIE, self.sessions.issue(info.key_id), **kwargs)
        value, token = self.sessions.csrf_pair()  # a new pair for the new session
        response.set_cookie(CSRF_COOKIE, value, **kwargs)
        response.set_cookie(CSRF_TOKEN_COOKIE, token, **kwargs)
        self.log.info("practitioner signed in", key_id=info.key_id)
        return response

    async def signout(self, request: Request) -> Response:
        data = await self.form(request)
        if isinstance(data, Response):
            return data
        response = RedirectResponse("/signin?notice=out", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- the queue ---------------------------------------------------------------------

    async def queue(self, request: Request) -> Response:
        query = request.url.query
        who = await self.who(request, f"/queue?{query}" if query else "/queue")
        if isinstance(who, Response):
            return who
        q = request.query_params
        return await self.queue_page(request, who, {k: q.get(k) or "" for k in _FILTERS})

    async def queue_page(
        self,
        request: Request,
        who: KeyInfo,
        typed: Mapping[str, str],
        *,
        find_error: str | None = None,
        reference: str = "",
    ) -> Response:
        """The queue filtered by what was chosen; a filter that cannot be applied is named
        in words (422) and the queue shown unfiltered."""
        chosen = {k: typed.get(k, "").strip() for k in _FILTERS}
        errors: list[tuple[str, str]] = []
        if chosen["urgency"] and chosen["urgency"] not in URGENCY_LABELS:
            errors.append(("filter-urgency", "Choose an urgency from the list."))
        if chosen["waiting"] and chosen["waiting"] not in dict(_AGES):
            errors.append(("filter-waiting", "Choose how long it has waited from the list."))
        if len(chosen["reason"]) > 200:
            errors.append(("filter-reason", "Shorten the reason to 200 characters or fewer."))
        if len(chosen["platform"]) > 100:
            errors.append(("filter-platform", "Choose a platform from the list."))
        if find_error is not None:
            errors.append(("reference", find_error))
        applied = {k: ("" if errors else v) for k, v in chosen.items()}
        async with self.db.pool.acquire() as conn:
            everything = await queries.queue(conn, queries.QueueFilters(limit=queries.MAX_LIMIT))
            items = everything
            if any(applied.values()):
                filters = queries.QueueFilters(
                    reason=applied["reason"] or None,
                    platform=applied["platform"] or None,
                    urgency=applied["urgency"] or None,
                    min_age_s=int(applied["waiting"]) if applied["waiting"] else None,
                    limit=queries.MAX_LIMIT,
                )
                items = await queries.queue(conn, filters)
        platforms = sorted({i.platform for i in everything} | ({applied["platform"]} - {""}))
        status = 200
        if errors:
            status = 404 if find_error is not None and reference else 422
        return self.page(
            request,
            "queue.html",
            status=status,
            who=who,
            errors=errors,
            rows=queue_rows(items, _now()),
            chosen=chosen,
            filtered=any(applied.values()),
            field_errors=dict(errors),
            platforms=platforms,
            urgencies=list(URGENCY_LABELS.items()),
            ages=list(_AGES),
            reference=reference,
        )

    async def find(self, request: Request) -> Response:
        """A case by its short reference (as read out on the phone) or its id."""
        who = await self.who(request, "/queue")
        if isinstance(who, Response):
            return who
        typed = (request.query_params.get("reference") or "").strip()[:100]
        case_id: uuid.UUID | None = None
        if typed:
            try:
                case_id = uuid.UUID(typed)
            except ValueError:
                async with self.db.pool.acquire() as conn:
                    case_id = await queries.by_reference(conn, typed)
        if case_id is not None:
            return RedirectResponse(f"/cases/{case_id}", status_code=303)
        message = (
            f"No case has the reference {typed}. Check it with the reporter: a reference "
            "looks like HL-7K2M-9QXT."
            if typed
            else "Enter a case reference, such as HL-7K2M-9QXT."
        )
        return await self.queue_page(request, who, {}, find_error=message, reference=typed)

    # -- a case ------------------------------------------------------------------------

    async def case(self, request: Request, case_id: str) -> Response:
        who = await self.who(request, f"/cases/{case_id}")
        if isinstance(who, Response):
            return who
        done = CONFIRMATIONS.get(request.query_params.get("done", ""))
        return await self.case_page(
            request, who, case_id, confirmation=done + PENDING_NOTE if done else None
        )

    async def case_page(
        self,
        request: Request,
        who: KeyInfo,
        case_id: str,
        *,
        status: int = 200,
        errors: Sequence[tuple[str | None, str]] = (),
        confirmation: str | None = None,
        refused: Refusal | None = None,
        retriage: FormState | None = None,
    ) -> Response:
        """The case page (with the reporter's contact details: this is a practitioner), or
        a 404 page when no such case is known."""
        try:
            wanted = uuid.UUID(case_id)
        except ValueError:
            wanted = None
        view = None
        if wanted is not None:
            async with self.db.pool.acquire() as conn:
                view = await queries.get_case(conn, wanted, contacts=True)
        if view is None:
            return self.problem(
                request,
                404,
                "Case not found",
                "No case with this id is known. A case just reported can take a moment to "
                "appear; check the id, or find the case by its reference from the queue.",
                who=who,
            )
        names = await self._key_names(view)
        context = case_page(view, _now(), refused=refused, retriage=retriage, names=names)
        return self.page(
            request,
            "case.html",
            status=status,
            who=who,
            errors=list(errors),
            confirmation=confirmation,
            **context,
        )

    async def act(self, request: Request, case_id: str, escalation_id: str) -> Response:
        """Record a practitioner's action on one escalation of the case. A form without a
        security token gets the 403 page; one whose token no longer holds (the page outlived
        a sign-in, say) records nothing either, but for a signed-in practitioner comes back
        open on the case page (403), with what was typed, to send again."""
        sent = await self.case_form(request, case_id)
        if isinstance(sent, Response):
            return sent
        data, csrf_valid, who = sent
        action = _text(data, "action")
        values = {k: _text(data, k) for k in ("note", "platform_reference", "decision")}
        found = _escalation(await self._view(case_id), escalation_id)
        if not csrf_valid and (found is None or action not in ALLOWED_STATES):
            return self.csrf_refused(request)
        if found is None or action not in ALLOWED_STATES:
            return await self.case_page(
                request,
                who,
                case_id,
                status=404,
                errors=[(None, "That escalation is not one of this case's. Nothing was recorded.")],
            )
        anchor, escalation = found
        if not csrf_valid:
            return await self.case_page(
                request,
                who,
                case_id,
                status=403,
                errors=[(f"{anchor}-{action}-note", STALE_FORM)],
                refused=Refusal((escalation_id, action), FormState(values, {})),
            )
        if not _offered(escalation, action):  # the page was older than the escalation's state
            state = STATE_LABELS.get(escalation.state, escalation.state)
            return await self.case_page(
                request,
                who,
                case_id,
                status=409,
                errors=[
                    (
                        anchor,
                        f"Not recorded: this escalation is now “{state}”, so "
                        f"“{ACTION_TITLES[action]}” cannot be recorded on it. Its current "
                        "state and the actions it allows are below.",
                    )
                ],
            )
        form_id = f"{anchor}-{action}"
        field_errors: dict[str, str] = {}
        if not values["note"]:
            field_errors["note"] = "Write a note: what happened, in your words."
        elif len(values["note"]) > 4000:
            field_errors["note"] = "Shorten the note to 4,000 characters or fewer."
        if action == "escalated_by_hand":
            if not values["platform_reference"]:
                field_errors["platform_reference"] = (
                    "Enter the platform's reference: the ticket or case number it gave you."
                )
            elif len(values["platform_reference"]) > 200:
                field_errors["platform_reference"] = (
                    "Shorten the platform's reference to 200 characters or fewer."
                )
        if action == "platform_decision" and values["decision"] not in DECISION_LABELS:
            field_errors["decision"] = "Choose the platform's decision."
        errors: list[tuple[str | None, str]] = [
            (f"{form_id}-{name}", message) for name, message in field_errors.items()
        ]
        if not errors:
            request_ = ActionRequest(
                action=action,
                note=values["note"],
                platform_reference=values["platform_reference"] or None
                if action == "escalated_by_hand"
                else None,
                decision=values["decision"] or None if action == "platform_decision" else None,
                case_id=uuid.UUID(case_id),
            )
            try:
                await self.actions.act(who, uuid.UUID(escalation_id), request_)
            except ActionRefused as refused:
                errors = [(f"{form_id}-note", f"Not recorded: {refused.detail}.")]
                status = refused.status
            else:
                return RedirectResponse(
                    f"/cases/{case_id}?done={action}#confirmation", status_code=303
                )
        else:
            status = 422
        return await self.case_page(
            request,
            who,
            case_id,
            status=status,
            errors=errors,
            refused=Refusal((escalation_id, action), FormState(values, field_errors)),
        )

    async def retriage(self, request: Request, case_id: str) -> Response:
        """Replace the case's triage decision (harm types, urgency, route) with a note; a
        form whose security token no longer holds comes back as `act` says."""
        sent = await self.case_form(request, case_id)
        if isinstance(sent, Response):
            return sent
        data, csrf_valid, who = sent
        if not csrf_valid and await self._view(case_id) is None:
            return self.csrf_refused(request)
        harm_types = [h for h in data.getlist("harm_types") if isinstance(h, str)]
        values: dict[str, Any] = {
            "harm_types": harm_types,
            "urgency": _text(data, "urgency"),
            "route": _text(data, "route"),
            "note": _text(data, "note"),
        }
        field_errors: dict[str, str] = {}
        first_harm = f"retriage-harm-{get_args(HarmType)[0]}"
        if not harm_types:
            field_errors[first_harm] = "Choose at least one harm type."
        elif any(h not in HARM_LABELS for h in harm_types):
            field_errors[first_harm] = "Choose harm types from the list."
        if values["urgency"] not in URGENCY_LABELS:
            field_errors["retriage-urgency"] = "Choose an urgency from the list."
        if values["route"] not in ROUTE_LABELS:
            field_errors["retriage-route"] = "Choose a route from the list."
        if not values["note"]:
            field_errors["retriage-note"] = "Write a note: why the decision changes."
        elif len(values["note"]) > 4000:
            field_errors["retriage-note"] = "Shorten the note to 4,000 characters or fewer."
        errors: list[tuple[str | None, str]] = list(field_errors.items())
        status = 422
        if not csrf_valid:
            errors, status = [("retriage-note", STALE_FORM)], 403
        elif not errors:
            try:
                await self.actions.retriage(
                    who,
                    uuid.UUID(case_id),
                    RetriageRequest(
                        harm_types=harm_types,
                        urgency=values["urgency"],
                        route=values["route"],
                        note=values["note"],
                    ),
                )
            except (ActionRefused, ValueError) as refused:
                detail = refused.detail if isinstance(refused, ActionRefused) else "not a case id"
                status = refused.status if isinstance(refused, ActionRefused) else 404
                errors = [("retriage-note", f"Not recorded: {detail}.")]
            else:
                return RedirectResponse(
                    f"/cases/{case_id}?done=retriage#confirmation", status_code=303
                )
        shown = {
            "harm_types": harm_types,
            "urgency": values["urgency"],
            "route": values["route"],
            "note": values["note"],
        }
        # The template names a field's problem by its short name.
        short = {k.removeprefix("retriage-"): v for k, v in field_errors.items()}
        if first_harm in field_errors:
            short["harm_types"] = field_errors[first_harm]
        return await self.case_page(
            request,
            who,
            case_id,
            status=status,
            errors=errors,
            retriage=FormState(shown, short),
        )

    async def _key_names(self, view: CaseView) -> dict[str, str]:
        """The name of every key that acted on the case (revoked ones too: the history
        keeps who it was), by key id."""
        ids = {d.overridden_by for d in view.decisions} | {a.actor for a in view.retriages}
        for e in view.escalations:
            ids |= {a.actor for a in e.actions} | {s.actor for s in e.states}
        wanted = sorted(i for i in ids if i)
        if not wanted:
            return {}
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key_id, name FROM access.api_keys WHERE key_id = ANY($1::text[])", wanted
            )
        return {r["key_id"]: r["name"] for r in rows if r["name"]}

    async def _view(self, case_id: str) -> CaseView | None:
        try:
            wanted = uuid.UUID(case_id)
        except ValueError:
            return None
        async with self.db.pool.acquire() as conn:
            return await queries.get_case(conn, wanted)

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.css,
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )


def _text(data: FormData, name: str) -> str:
    value = data.get(name)
    return value.strip() if isinstance(value, str) else ""


def _escalation(view: CaseView | None, escalation_id: str) -> tuple[str, EscalationView] | None:
    """One of the case's escalations and its page anchor (`e1`, `e2`, ...)."""
    if view is None:
        return None
    for n, e in enumerate(view.escalations, start=1):
        if str(e.escalation_id) == escalation_id:
            return f"e{n}", e
    return None


def build_pages(
    db: Database, access: Access, sessions: Sessions, actions: Actions, settings: Settings
) -> APIRouter:
    """The practitioners' pages as a router for the casework app (left out of its OpenAPI
    document): see the module docstring for what each promises."""
    pages = _Pages(db, access, sessions, actions, settings)
    router = APIRouter(include_in_schema=False)

    async def root() -> Response:
        return RedirectResponse("/queue", status_code=303)

    async def signin_form(request: Request) -> Response:
        return pages.signin_page(request)

    router.add_api_route("/", root, methods=["GET"])
    router.add_api_route("/signin", signin_form, methods=["GET"])
    router.add_api_route("/signin", pages.signin, methods=["POST"])
    router.add_api_route("/signout", pages.signout, methods=["POST"])
    router.add_api_route("/queue", pages.queue, methods=["GET"])
    router.add_api_route("/find", pages.find, methods=["GET"])
    router.add_api_route("/cases/{case_id}", pages.case, methods=["GET"])
    router.add_api_route(
        "/cases/{case_id}/escalations/{escalation_id}/actions", pages.act, methods=["POST"]
    )
    router.add_api_route("/cases/{case_id}/retriage", pages.retriage, methods=["POST"])
    router.add_api_route("/static/helpline.css", pages.stylesheet, methods=["GET"])
    return router
