"""What each simulated platform expects and answers: how it takes credentials, the exact
shape of a notice, of a follow-up and of an appeal, the name of its lookup parameter, its
status words, and whether it lets a notifier withdraw a notice (`withdrawal`: Snapchat and
Discord do not).

A notice is checked strictly against its platform's shape: every field present with the
right kind, no field the platform does not know, the reason code one of the platform's
own (`reason_codes.json`, the rules data's codes); so are a follow-up and an appeal.
WhatsApp, Telegram and Roblox have no notice API and so are not simulated. The national
hotline (`HOTLINE`) is not a platform: it takes reports of child sexual imagery (see
`server.py`) with a bearer token.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any

# A shape maps each field to its kind, or to a nested shape. Kinds: "ref" (our reference,
# a UUID), "url" (http or https), "code" (the platform's reason code), "dsa" (a DSA
# statement-of-reasons category), "text", "email", "true" (the boolean true), "bool", or
# an enumeration ("HIGH|NORMAL"); "count" (a whole number from 1) in a follow-up.
Shape = dict[str, Any]

# A follow-up (a re-notification after the deadline, citing the notice's reference in its
# path) and an appeal (contesting a decision), by default: the sender's running count of
# follow-ups and a text; the reason to reconsider.
_FOLLOWUP: Shape = {"follow_up": "count", "message": "text"}
_APPEAL: Shape = {"reason": "text"}


@dataclass(frozen=True)
class PlatformSpec:
    slug: str
    pending: str
    takedowns: tuple[str, ...]  # statuses that took the content down, most common first
    other: tuple[str, ...]  # decisions that left it up (first: no violation found)
    auth: str = "bearer"  # bearer | oauth | bot | api_key | basic | client_id_bearer
    shape: Shape | None = None
    ref: str = "client_reference"  # dotted path of our reference in the notice
    url: str = "url"
    code: str = "category"
    dsa: str = "dsa_category"
    api_key_header: str = "x-goog-api-key"
    followup_shape: Shape | None = None  # None: `_FOLLOWUP`
    appeal_shape: Shape | None = None  # None: `_APPEAL`
    withdrawal: bool = True  # the notifier may withdraw an undecided notice

    @property
    def no_violation(self) -> str:
        """The status word of a decision that found no violation (the only one appealed)."""
        return self.other[0]

    @property
    def lookup_param(self) -> str:
        return self.ref.rsplit(".", 1)[-1]


REASON_CODES: dict[str, frozenset[str]] = {
    slug: frozenset(codes)
    for slug, codes in json.loads(
        (resources.files("helpline_simulator") / "reason_codes.json").read_text("utf-8")
    )["reason_codes"].items()
}

_NOTIFIER = {"name": "text", "email": "email"}
_PLAIN: Shape = {
    "client_reference": "ref",
    "url": "url",
    "category": "code",
    "dsa_category": "dsa",
    "explanation": "text",
    "priority": "urgent|standard",
    "notifier": _NOTIFIER,
    "good_faith_statement": "text",
}
_META_SHAPE: Shape = {
    "reporter_reference": "ref",
    "content": {"url": "url"},
    "reason": "code",
    "dsa_category": "dsa",
    "explanation": "text",
    "notifier": _NOTIFIER,
    "bona_fide": "true",
    "bona_fide_statement": "text",
    "urgent": "bool",
}
_META = {
    "pending": "PENDING",
    "takedowns": ("REMOVED", "GEO_BLOCKED", "NOT_AVAILABLE"),
    "other": ("NOT_ACTIONED", "WARNING_SCREEN"),
    "auth": "oauth",
    "shape": _META_SHAPE,
    "ref": "reporter_reference",
    "url": "content.url",
    "code": "reason",
    "followup_shape": {"follow_up_number": "count", "explanation": "text"},
    "appeal_shape": {"explanation": "text", "bona_fide": "true"},
}

PLATFORMS: dict[str, PlatformSpec] = {
    "tiktok": PlatformSpec(
        "tiktok",
        "IN_REVIEW",
        ("CONTENT_REMOVED", "RESTRICTED_IN_REGION", "CONTENT_NOT_FOUND"),
        ("NO_VIOLATION", "AGE_RESTRICTED"),
        shape={
            "external_id": "ref",
            "content_url": "url",
            "violation_type": "code",
            "dsa_category": "dsa",
            "description": "text",
            "priority": "urgent|normal",
            "reporter": _NOTIFIER,
            "good_faith_declaration": "text",
        },
        ref="external_id",
        url="content_url",
        code="violation_type",
        followup_shape={"reminder_count": "count", "description": "text"},
        appeal_shape={"appeal_reason": "text"},
    ),
    "instagram": PlatformSpec("instagram", **_META),  # type: ignore[arg-type]
    "facebook": PlatformSpec("facebook", **_META),  # type: ignore[arg-type]
    "threads": PlatformSpec("threads", **_META),  # type: ignore[arg-type]
    "youtube": PlatformSpec(
        "youtube",
        "UNDER_REVIEW",
        ("REMOVED", "VIDEO_UNAVAILABLE"),
        ("NO_ACTION", "AGE_RESTRICTED", "LIMITED_FEATURES"),
        auth="api_key",
        shape={
            "clientReference": "ref",
            "contentUrl": "url",
            "reasonCode": "code",
            "dsaCategory": "dsa",
            "explanation": "text",
            "priority": "HIGH|NORMAL",
            "flagger": {"displayName": "text", "email": "email"},
            "goodFaithStatement": "text",
        },
        ref="clientReference",
        url="contentUrl",
        code="reasonCode",
        dsa="dsaCategory",
        followup_shape={"followUpCount": "count", "message": "text"},
        appeal_shape={"appealReason": "text"},
    ),
    "x": PlatformSpec(
        "x",
        "OPEN",
        ("DELETED", "WITHHELD", "NOT_FOUND"),
        ("NO_VIOLATION", "LABELED"),
        shape={
            "reference_id": "ref",
            "reported_url": "url",
            "violation": "code",
            "dsa_category": "dsa",
            "details": "text",
            "reporter": {"full_name": "text", "email": "email"},
            "attestation": "text",
        },
        ref="reference_id",
        url="reported_url",
        code="violation",
        followup_shape={"followup_count": "count", "details": "text"},
        appeal_shape={"details": "text"},
    ),
    "snapchat": PlatformSpec(
        "snapchat",
        "RECEIVED",
        ("REMOVED", "NOT_FOUND"),
        ("NO_VIOLATION",),
        auth="basic",
        shape=_PLAIN,
        withdrawal=False,
    ),
    "discord": PlatformSpec(
        "discord",
        "IN_PROGRESS",
        ("ACTION_TAKEN", "CONTENT_DELETED"),
        ("NO_ACTION",),
        auth="bot",
        shape={
            "external_reference": "ref",
            "content_url": "url",
            "violation_code": "code",
            "dsa_category": "dsa",
            "context": "text",
            "reporter_name": "text",
            "reporter_email": "email",
            "good_faith": "true",
            "good_faith_statement": "text",
            "urgent": "bool",
        },
        ref="external_reference",
        url="content_url",
        code="violation_code",
        followup_shape={"reminder": "count", "context": "text"},
        appeal_shape={"context": "text"},
        withdrawal=False,
    ),
    "reddit": PlatformSpec(
        "reddit",
        "PENDING_REVIEW",
        ("REMOVED", "QUARANTINED", "ALREADY_DELETED"),
        ("APPROVED",),
        auth="basic",
        shape={
            "client_ref": "ref",
            "target_url": "url",
            "rule": "code",
            "dsa_category": "dsa",
            "explanation": "text",
            "notifier": _NOTIFIER,
            "certification": "text",
        },
        ref="client_ref",
        url="target_url",
        code="rule",
        appeal_shape={"explanation": "text"},
    ),
    "twitch": PlatformSpec(
        "twitch",
        "OPEN",
        ("ACTIONED", "CONTENT_UNAVAILABLE"),
        ("NO_VIOLATION",),
        auth="client_id_bearer",
        shape={
            "data": {
                "external_id": "ref",
                "target_url": "url",
                "reason": "code",
                "dsa_category": "dsa",
                "description": "text",
                "notifier": _NOTIFIER,
                "good_faith_statement": "text",
            }
        },
        ref="data.external_id",
        url="data.target_url",
        code="data.reason",
        dsa="data.dsa_category",
        followup_shape={"data": {"follow_up": "count", "description": "text"}},
        appeal_shape={"data": {"description": "text"}},
    ),
}

# The national hotline's reporting endpoint takes a bearer token like a platform's.
HOTLINE = PlatformSpec("hotline", "received", ("actioned",), ("received",))
HOTLINE_URGENCIES = ("critical", "high", "normal")


def pick(body: Any, path: str) -> Any:
    for part in path.split("."):
        body = body[part]
    return body


def shape_error(spec: PlatformSpec, body: Any) -> str | None:
    """Why `body` is not a notice `spec`'s platform accepts (naming the field), or None."""
    return _check(spec, spec.shape or _PLAIN, body, "")


def followup_error(spec: PlatformSpec, body: Any) -> str | None:
    """Why `body` is not a follow-up `spec`'s platform accepts (naming the field), or None."""
    return _check(spec, spec.followup_shape or _FOLLOWUP, body, "")


def appeal_error(spec: PlatformSpec, body: Any) -> str | None:
    """Why `body` is not an appeal `spec`'s platform accepts (naming the field), or None."""
    return _check(spec, spec.appeal_shape or _APPEAL, body, "")


def hotline_error(body: Any) -> str | None:
    """Why `body` is not a report the hotline accepts (naming the field), or None: an object
    of exactly `client_reference` (a UUID), `url` (http or https), `platform` (text),
    `harm_types` (a non-empty list of texts) and `urgency` (critical, high or normal)."""
    if not isinstance(body, dict):
        return "the report must be an object"
    shape: Shape = {
        "client_reference": "ref",
        "url": "url",
        "platform": "text",
        "urgency": "|".join(HOTLINE_URGENCIES),
    }
    for key in body:
        if key not in shape and key != "harm_types":
            return f"unknown field {key}"
    harm = body.get("harm_types")
    if "harm_types" not in body:
        return "missing field harm_types"
    if (
        not isinstance(harm, list)
        or not harm
        or not all(isinstance(h, str) and h.strip() for h in harm)
    ):
        return "invalid field harm_types (expected a non-empty list of texts)"
    return _check(HOTLINE, shape, {k: v for k, v in body.items() if k != "harm_types"}, "")


def _check(spec: PlatformSpec, shape: Shape, body: Any, at: str) -> str | None:
    if not isinstance(body, dict):
        return f"{at or 'the notice'} must be an object"
    for key in body:
        if key not in shape:
            return f"unknown field {at}{key}"
    for key, kind in shape.items():
        where = f"{at}{key}"
        if key not in body:
            return f"missing field {where}"
        value = body[key]
        if isinstance(kind, dict):
            if (error := _check(spec, kind, value, where + ".")) is not None:
                return error
        elif not _valid(spec, kind, value):
            return f"invalid field {where} (expected {kind})"
    return None


def _valid(spec: PlatformSpec, kind: str, value: Any) -> bool:
    if kind == "true":
        return value is True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not isinstance(value, str) or not value.strip():
        return False
    if kind == "ref":
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True
    if kind == "url":
        return value.startswith(("https://", "http://")) and len(value) > 10
    if kind == "code":
        return value in REASON_CODES.get(spec.slug, frozenset())
    if kind == "dsa":
        return value.startswith("STATEMENT_CATEGORY_")
    if kind == "email":
        local, _, domain = value.partition("@")
        return bool(local) and "." in domain
    if kind == "text":
        return True
    return value in kind.split("|")
