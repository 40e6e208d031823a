"""What notify puts on helpline.notify.dlq about a malformed event carries no reporter data
however the producer got it wrong: an address beside the `reporter` member (flattened, or
nested under another name), or an address or phone number inside a case's description.
The end-to-end path (a refused event reaching the topic with its reason) is tested in
test_notify_receipts_e2e; this checks what `redact` leaves of the values it is given."""

from __future__ import annotations

import json
import uuid

from helpline_notify.usecase import REDACTED, redact

EMAIL = "alice.smith@school.example"
PHONE = "+44 7700 900123"


def test_a_flattened_reporter_on_the_reporters_topic_is_redacted() -> None:
    case_id = str(uuid.uuid4())
    raw = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "case_id": case_id,
            "reporter_email": EMAIL,
            "name": "Alice Smith",
            "contact": {"email": EMAIL, "phone": PHONE},
            "reporter": {"name": "Alice Smith", "email": EMAIL},
        }
    ).encode()
    out = redact(raw)
    assert EMAIL.encode() not in out
    assert b"Alice Smith" not in out
    assert PHONE.encode() not in out
    data = json.loads(out)
    assert data["case_id"] == case_id  # the rest stays, so the letter can be traced
    assert data["reporter"] == REDACTED
    assert data["reporter_email"] == REDACTED


def test_an_address_or_phone_in_a_description_is_redacted_and_urls_kept() -> None:
    url = "https://www.tiktok.com/@someone/video/1"
    raw = json.dumps(
        {
            "case_id": str(uuid.uuid4()),
            "description": f"Please reply to {EMAIL} or call {PHONE} about it",
            "urls": [url],
        }
    ).encode()
    out = redact(raw)
    assert EMAIL.encode() not in out
    assert PHONE.encode() not in out
    data = json.loads(out)
    assert data["urls"] == [url]
    assert data["description"].startswith("Please reply to ")


def test_what_does_not_parse_as_an_object_is_withheld() -> None:
    assert redact(f"not json {EMAIL}".encode()) == b""
    assert redact(json.dumps([EMAIL]).encode()) == b""


def test_ids_and_times_stay_readable() -> None:
    event_id, at = str(uuid.uuid4()), "2026-11-26T08:21:23.123456+00:00"
    data = json.loads(redact(json.dumps({"event_id": event_id, "occurred_at": at}).encode()))
    assert data == {"event_id": event_id, "occurred_at": at}
