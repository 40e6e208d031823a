"""CloudEvents attributes as Kafka headers (binary content mode)."""

from __future__ import annotations

import uuid
from datetime import datetime

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
