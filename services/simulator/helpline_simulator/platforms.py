"""What each simulated platform expects and answers: how it takes credentials, the exact
shape of a notice, the name of its lookup parameter, and its status words.

A notice is checked strictly against its platform's shape: every field present with the
right kind, no field the platform does not know, the reason code one of the platform's
own (`reason_codes.json`, the rules data's codes). WhatsApp, Telegram and Roblox have no
notice API and so are not simulated.
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
# an enumeration ("HIGH|NORMAL").
Shape = dict[str, Any]


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
    ),
    "snapchat": PlatformSpec(
        "snapchat",
        "RECEIVED",
        ("REMOVED", "NOT_FOUND"),
        ("NO_VIOLATION",),
        auth="basic",
        shape=_PLAIN,
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
    ),
}


def pick(body: Any, path: str) -> Any:
    for part in path.split("."):
        body = body[part]
    return body


def shape_error(spec: PlatformSpec, body: Any) -> str | None:
    """Why `body` is not a notice `spec`'s platform accepts (naming the field), or None."""
    return _check(spec, spec.shape or _PLAIN, body, "")


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
