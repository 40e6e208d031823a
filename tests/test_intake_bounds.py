"""What intake publishes about a refused message fits the broker: the key is cut (and the
event says so) and the reasons are capped, whatever the input."""

from __future__ import annotations

import json

from aiokafka.structs import ConsumerRecord

from helpline_intake.usecase import rejected_message, rejection
from helpline_intake.validation import validate_report


def test_a_huge_key_and_thousands_of_problems_make_a_bounded_rejection() -> None:
    raw = json.dumps({"schema_version": 1, **{f"extra{i}": i for i in range(20_000)}}).encode()
    key = b"k" * 600_000
    record = ConsumerRecord(
        "helpline.reports.submitted", 0, 5, 0, 0, key, raw, None, len(key), len(raw), []
    )
    reasons = validate_report(raw)
    assert isinstance(reasons, list)
    assert len(reasons) > 100
    event = rejection(raw, reasons, via="kafka", record=record)
    message = rejected_message(event, record.key)
    assert len(message.value) < 1_000_000
    assert len(message.key or b"") == 1024
    assert event.key_size == 600_000
    assert len(event.reasons) == 100
    assert event.reasons[-1].type == "too_many"
