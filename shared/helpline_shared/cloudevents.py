"""CloudEvents attributes as Kafka headers (binary content mode)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from helpline_shared.kafka import OutgoingMessage

SPEC_VERSION = "1.0"


def headers(
    *,
    event_id: uuid.UUID | str,
    type_: str,
    source: str,
    time: datetime,
    subject: str | None = None,
) -> dict[str, str]:
    out = {
        "ce_id": str(event_id),
        "ce_type": type_,
        "ce_source": source,
        "ce_specversion": SPEC_VERSION,
        "ce_time": time.isoformat(),
        "content-type": "application/json",
    }
    if subject is not None:
        out["ce_subject"] = subject
    return out


def event_message(
    topic: str,
    event: BaseModel,
    *,
    event_id: uuid.UUID,
    key: object | None,
    type_: str,
    source: str,
    time: datetime,
    subject: object | None = None,
) -> OutgoingMessage:
    """An event as a Kafka message: JSON body, CloudEvents headers; a key that is not
    bytes is sent as its text."""
    return OutgoingMessage(
        topic,
        event.model_dump_json().encode(),
        key if key is None or isinstance(key, bytes) else str(key).encode(),
        headers(
            event_id=event_id,
            type_=type_,
            source=source,
            time=time,
            subject=None if subject is None else str(subject),
        ),
    )
