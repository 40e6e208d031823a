"""Intake's validation: a valid report parses; every kind of bad input yields a specific
reason (where and what), and no reason echoes the personal data it was given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpline_intake.validation import MAX_MESSAGE_BYTES, validate_report
from helpline_shared.events import RejectionReason, ReportSubmittedV1, ReportSubmittedV2

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "report.json"


def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


def encode(data: object) -> bytes:
    return json.dumps(data).encode()


def rejected(raw: bytes | None) -> list[RejectionReason]:
    result = validate_report(raw)
    assert isinstance(result, list), f"expected a rejection, got {result!r}"
    assert result, "a rejection carries at least one reason"
    return result


def only_reason(raw: bytes | None) -> RejectionReason:
    reasons = rejected(raw)
    assert len(reasons) == 1, reasons
    return reasons[0]


def test_the_example_report_is_valid() -> None:
    result = validate_report(EXAMPLE.read_bytes())

    assert isinstance(result, ReportSubmittedV1)
    assert result.schema_version == 1
    assert result.source == "example-web-form"
    assert result.report_id == "example-0001"
    assert result.reporter.email == "a.teacher@school.example"
    assert result.issue_types == ["impersonation"]
    assert len(result.urls) == 2
    assert result.urls[0].startswith("https://www.tiktok.com/")


def test_optional_fields_may_be_left_out() -> None:
    data = example()
    for key in ("submitted_at", "organisation", "issue_types"):
        del data[key]
    del data["reporter"]["role"]

    result = validate_report(encode(data))

    assert isinstance(result, ReportSubmittedV1)
    assert result.issue_types == []
    assert result.submitted_at is None


@pytest.mark.parametrize("raw", [b"", None], ids=["empty-bytes", "none"])
def test_empty_message(raw: bytes | None) -> None:
    reason = only_reason(raw)

    assert (reason.loc, reason.type) == ("", "empty")


def test_not_json() -> None:
    reason = only_reason(b"this is not json {")

    assert (reason.loc, reason.type) == ("", "json_invalid")


def test_json_array_is_not_a_report() -> None:
    reason = only_reason(encode([example()]))

    assert (reason.loc, reason.type) == ("", "model_type")


@pytest.mark.parametrize("version", [3, 0, -1, "2", None, [2], 1.5, 10**30])
def test_a_schema_version_intake_does_not_read_is_refused_with_one_clear_reason(
    version: object,
) -> None:
    data = example()
    data["schema_version"] = version
    data["reporter"]["email"] = "not judged against an unknown contract"

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("schema_version", "unsupported_version")
    assert reason.message.endswith("is not a version intake reads; send 1 or 2")
    if version == 3:
        assert reason.message.startswith("schema_version 3 ")


def test_version_2_may_leave_the_prior_report_out() -> None:
    """A version 2 report whose reporter was not asked (or did not answer) about a prior
    report leaves it out; it may still say whether a child is affected."""
    data = example()
    data["schema_version"] = 2
    data["child_affected"] = True

    result = validate_report(encode(data))

    assert isinstance(result, ReportSubmittedV2)
    assert result.prior_report is None
    assert result.child_affected is True


def test_a_version_2_report_parses_with_its_prior_report() -> None:
    data = example()
    data["schema_version"] = 2
    data["prior_report"] = {
        "reported_to_platform": True,
        "reported_at": "2026-11-18T16:40:00+01:00",
        "platform_answer": "no_answer_yet",
        "platform_reference": None,
    }

    result = validate_report(encode(data))

    assert isinstance(result, ReportSubmittedV2)
    assert result.prior_report.platform_answer == "no_answer_yet"
    assert result.prior_report.reported_at is not None


def test_a_prior_report_that_was_not_made_has_no_answer() -> None:
    data = example()
    data["schema_version"] = 2
    data["prior_report"] = {"reported_to_platform": False, "platform_answer": "content_removed"}

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("prior_report", "value_error")
    data["prior_report"] = {"reported_to_platform": False}
    assert isinstance(validate_report(encode(data)), ReportSubmittedV2)


def test_missing_reporter() -> None:
    data = example()
    del data["reporter"]

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("reporter", "missing")


def test_bad_email() -> None:
    data = example()
    data["reporter"]["email"] = "not-an-email"

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("reporter.email", "value_error")


def test_empty_urls() -> None:
    data = example()
    data["urls"] = []

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("urls", "too_short")


def test_javascript_url_is_refused_where_it_is() -> None:
    data = example()
    data["urls"] = ["https://www.tiktok.com/@ok", "javascript:alert(document.cookie)"]

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("urls.1", "value_error")
    assert "javascript" not in reason.message


def test_unknown_extra_field() -> None:
    data = example()
    data["priority"] = "urgent"

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("priority", "extra_forbidden")


def test_unknown_extra_field_in_reporter() -> None:
    data = example()
    data["reporter"]["phone"] = "+44 7700 900123"

    reason = only_reason(encode(data))

    assert (reason.loc, reason.type) == ("reporter.phone", "extra_forbidden")
    assert "7700" not in reason.message


def test_oversize_message_is_refused_before_parsing() -> None:
    raw = b" " * (MAX_MESSAGE_BYTES + 1)

    reason = only_reason(raw)

    # A refused message of the limit's size still fits in a rejection under Kafka's 1 MB.
    assert MAX_MESSAGE_BYTES * 4 / 3 < 1_000_000
    assert (reason.loc, reason.type) == ("", "too_large")


def test_message_at_the_limit_is_parsed_not_refused_for_size() -> None:
    data = example()
    raw = encode(data)
    # Pad with insignificant whitespace up to exactly the limit: still a valid report.
    raw = raw + b" " * (MAX_MESSAGE_BYTES - len(raw))
    assert len(raw) == MAX_MESSAGE_BYTES

    assert isinstance(validate_report(raw), ReportSubmittedV1)


def test_every_problem_gets_its_own_reason() -> None:
    data = example()
    data["submitted_at"] = "yesterday"
    data["reporter"]["email"] = "nobody"
    data["urls"] = ["ftp://files.example/x"]
    data["issue_types"] = ["made_up"]

    reasons = rejected(encode(data))

    assert {(r.loc, r.type) for r in reasons} == {
        ("submitted_at", "datetime_from_date_parsing"),
        ("reporter.email", "value_error"),
        ("urls.0", "value_error"),
        ("issue_types.0", "literal_error"),
    }


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{", b"[" * 5000, b"null", b'"a string"', b"{}"],
    ids=["invalid-utf8", "deeply-nested", "null", "string", "empty-object"],
)
def test_never_raises(raw: bytes) -> None:
    assert rejected(raw)


def assert_not_echoed(reasons: list[RejectionReason], *secrets: str) -> None:
    for reason in reasons:
        for secret in secrets:
            assert secret not in reason.message, f"{secret!r} echoed in {reason}"
            assert secret not in reason.loc, f"{secret!r} echoed in {reason}"


def test_reasons_do_not_echo_personal_data_in_other_fields() -> None:
    data = example()
    data["reporter"]["name"] = "Jane Q. Secretperson" * 20  # over 200 characters
    data["description"] = ""
    data["organisation"] = "Secretperson Academy " * 20  # over 200 characters

    reasons = rejected(encode(data))

    assert {(r.loc, r.type) for r in reasons} == {
        ("reporter.name", "string_too_long"),
        ("description", "string_too_short"),
        ("organisation", "string_too_long"),
    }
    assert_not_echoed(reasons, "Secretperson", "Jane")


@pytest.mark.parametrize(
    ("email", "personal_parts"),
    [
        ("jane.secretperson.example.com", ["secretperson"]),
        ("jane.secretperson@@example.com", ["secretperson"]),
        ("jane secretperson@example.com", ["secretperson"]),
        ("jane@secretperson", ["secretperson"]),
        # A family domain with a character IDNA refuses: the domain must not be echoed.
        ("jane@secretperson\u2665family.example", ["secretperson"]),
        # An address literal that is not an IP address: it must not be echoed either.
        ("jane@[192.168.271.33]", ["192.168.271.33"]),
    ],
    ids=["no-at", "double-at", "space", "no-dot", "idna-domain", "address-literal"],
)
def test_reasons_never_echo_the_bad_email(email: str, personal_parts: list[str]) -> None:
    data = example()
    data["reporter"]["email"] = email

    reasons = rejected(encode(data))

    assert [(r.loc, r.type) for r in reasons] == [("reporter.email", "value_error")]
    assert_not_echoed(reasons, email, *personal_parts)
