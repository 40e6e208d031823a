"""The emails to reporters, rendered from jinja2 templates (`templates/<name>.txt` always,
`templates/<name>.html` when present) into a subject, a plain-text part and an HTML part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

_ENV = Environment(
    loader=PackageLoader("helpline_notify", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

# What a platform did, in plain words (the escalation's `decision`).
DECISION_WORDS: dict[str, str] = {
    "removed": "removed the content",
    "disabled": "blocked access to the content",
    "age_restricted": "restricted the content to adults",
    "demoted": "left the content up but shows it to fewer people",
    "labelled": "left the content up with a warning label",
    "no_violation": "decided the content does not break its rules and left it up",
    "already_gone": "found the content had already been taken down",
}
# Where a URL ended when no decision says more (the escalation's final `state`).
STATE_WORDS: dict[str, str] = {
    "decided": "The platform decided",
    "failed": "We could not get this to the platform",
    "closed": "Our practitioners dealt with this themselves (advice, no platform decision)",
    "withdrawn": "We withdrew our report to the platform after reviewing the case",
    "appeal_decided": "The platform decided on our appeal",
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def platform_name(slug: str) -> str:
    """A platform as people write it (the status page's names: "tiktok" -> "TikTok"); an
    unknown host as "the website that hosts it"."""
    # Imported here: status_page imports this module (and usecase, which imports this one),
    # so a module-level import made `import helpline_notify.usecase` fail on its own.
    from helpline_notify import status_page

    return status_page.platform_name(slug)


HOTLINE = "the national hotline"
HOTLINE_LINK = "(link withheld: it was reported to the national hotline)"


def outcome_words(state: str, decision: str | None) -> str:
    """A URL's final outcome in one plain sentence."""
    if decision and state in ("decided", "appeal_decided"):
        lead = "On our appeal, the platform" if state == "appeal_decided" else "The platform"
        return f"{lead} {DECISION_WORDS.get(decision, decision.replace('_', ' '))}."
    return STATE_WORDS.get(state, state.replace("_", " ")) + "."


def render(name: str, subject: str, **context: Any) -> Rendered:
    text = _ENV.get_template(f"{name}.txt").render(subject=subject, **context)
    try:
        html_template = _ENV.get_template(f"{name}.html")
    except TemplateNotFound:  # no HTML part for this email
        return Rendered(subject, text, None)
    return Rendered(subject, text, html_template.render(subject=subject, **context))
