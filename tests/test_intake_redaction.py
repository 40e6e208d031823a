"""What intake publishes about a refused message: never personal data, and never a crash,
whatever the bytes (lone surrogates, deep nesting, personal data under other key names)."""

from __future__ import annotations

import json

import pytest

from helpline_intake.redaction import redact


@pytest.mark.parametrize(
    "raw",
    [
        b'{"schema_version": 1, "organisation": "Oakfield\\ud800"}',
        b'{"schema_version": 1, "x": ' + b"[" * 700 + b"]" * 700 + b"}",
        b'{"\\udfff": 1}',
    ],
)
def test_bytes_that_cannot_be_written_back_are_withheld_not_a_crash(raw: bytes) -> None:
    assert redact(raw) is None


def test_personal_data_under_other_names_and_in_values_is_redacted() -> None:
    raw = json.dumps(
        {
            "reporterEmail": "jo.bloggs@school.example",
            "reporter_mobile": "07700 900123",
            "contactName": "Jo Bloggs",
            "urls": [
                "mailto:jo.bloggs@school.example",
                "https://www.tiktok.com/@a/video/123456789",
            ],
            "description": "ring me on +44 7700 900 123 or write to jo@school.example",
        }
    ).encode()
    out = (redact(raw) or b"").decode()
    for secret in ("jo.bloggs", "07700", "7700 900", "Jo Bloggs", "jo@school"):
        assert secret not in out
    assert "https://www.tiktok.com/@a/video/123456789" in out
