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
import re
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


# Key names that suggest personal data, whatever their spelling (reporterEmail, tel_no, ...).
PERSONAL_KEY_PARTS = ("email", "mail", "phone", "mobile", "tel", "name", "address", "reporter")
# Values that look like an email address or a phone number, wherever they are.
EMAIL = re.compile(r"[^\s@/:\\\"'<>(),;]+@[^\s@/\\\"'<>(),;]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")


def redact(raw: bytes | None) -> bytes | None:
    """The bytes to publish about a refused message: redacted JSON, or None (withheld).

    Never raises: anything it cannot read or write back safely (not JSON, nested too deep,
    lone surrogates) is withheld.
    """
    if not raw:
        return raw
    try:
        data = json.loads(raw)
        return json.dumps(_scrub(data), ensure_ascii=False, separators=(",", ":")).encode()
    except (ValueError, RecursionError, UnicodeError, TypeError):
        return None


def redact_dead_letter(raw: bytes) -> bytes:
    """:func:`redact` for a dead letter's value: empty when withheld."""
    return redact(raw) or b""


def _personal(key: str) -> bool:
    folded = "".join(c for c in key.lower() if c.isalnum())
    return key.lower() in PERSONAL_KEYS or any(part in folded for part in PERSONAL_KEY_PARTS)


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {_scrub(k): _hide(v) if _personal(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        value = EMAIL.sub(REDACTED, value)
        return value if value.startswith(("http://", "https://")) else PHONE.sub(REDACTED, value)
    return value


def _hide(value: Any) -> Any:
    if isinstance(value, dict):  # keep the keys, so the reasons still point somewhere
        return {k: _hide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return None if value is None else REDACTED
