"""What intake publishes about a message it refused carries no reporter's personal data.

The full refused bytes stay in intake's own table (`intake.rejections.original`) until the
retention period ends (`helpline intake purge`). What goes on a topic
(`helpline.reports.rejected`, `helpline.intake.dlq`) is :func:`redact` of them: the JSON with
the value of every personal field (the reporter and any field named like its parts, at any
depth) replaced by "[redacted]", or nothing at all when the bytes do not parse as JSON,
since then nothing can tell the personal data from the rest.
"""

from __future__ import annotations

import json
from typing import Any

REDACTED = "[redacted]"
# The reporter object of ReportSubmittedV1 (name, email, role) and what publishers send
# beside it by mistake.
PERSONAL_KEYS = frozenset(
    {
        "reporter",
        "name",
        "email",
        "role",
        "phone",
        "telephone",
        "mobile",
        "address",
        "reporter_name",
        "reporter_email",
        "reporter_phone",
    }
)


def redact(raw: bytes | None) -> bytes | None:
    """The bytes to publish about a refused message: redacted JSON, or None (withheld)."""
    if not raw:
        return raw
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        return None
    return json.dumps(_scrub(data), ensure_ascii=False, separators=(",", ":")).encode()


def redact_dead_letter(raw: bytes) -> bytes:
    """:func:`redact` for a dead letter's value: empty when withheld."""
    return redact(raw) or b""


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _hide(v) if k.lower() in PERSONAL_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _hide(value: Any) -> Any:
    if isinstance(value, dict):  # keep the keys, so the reasons still point somewhere
        return {k: _hide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return None if value is None else REDACTED
