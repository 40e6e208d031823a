"""The manual channel: a platform with no API for notices.

Its adapter never calls anything. Every submit raises :class:`NeedsManualError` whose reason
tells the practitioner where to report (the platform's own form or address) and what to
include (the exact URL, the reason code, the explanation, the helpline as notifier, the
good-faith statement), so the escalation waits for a person with instructions in hand.
Follow-ups and appeals likewise go by hand (`NeedsManualError` saying where); `withdraw`
answers False: nothing was sent automatically.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from helpline_escalator.adapters.base import (
    NeedsManualError,
    Notice,
    PlatformAdapter,
    PlatformResult,
)
from helpline_escalator.platform_settings import PlatformSettings


class ManualChannelAdapter(PlatformAdapter):
    """Instructions instead of a call. `where` names the form or address; `how` any
    platform-specific step; `categories` the platform's reason codes by harm type."""

    auth = "manual"
    status_lookup = False
    where: ClassVar[str]
    how: ClassVar[str] = ""
    categories: ClassVar[dict[str, str]] = {}

    def __init__(self, client: Any = None, target: str | PlatformSettings | None = None) -> None:
        self.settings = target if isinstance(target, PlatformSettings) else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def instructions(self, notice: Notice) -> str:
        """What the practitioner does, with nothing about the reporter or the URL in it
        (the URL is on the escalation itself)."""
        lead = notice.harm_types[0] if notice.harm_types else "other"
        code = notice.reason_code or self.categories.get(
            lead, self.categories.get("other", "other")
        )
        how = f" {self.how}" if self.how else ""
        return (
            f"{self.slug}: no notice API; report by hand at {self.where}.{how} Include the "
            f"escalation's exact URL, the reason '{code}' ({notice.dsa_category}), the "
            "explanation, the helpline as notifier with its email, and the good-faith "
            "statement; then record the platform's reference and decision here."
        )

    async def submit(self, notice: Notice) -> PlatformResult:
        raise NeedsManualError(self.instructions(notice))

    async def status(self, reference: str) -> PlatformResult:
        raise NeedsManualError(
            f"{self.slug}: no notice API; its decision arrives by email", reference=reference
        )

    async def lookup(self, client_reference: uuid.UUID) -> PlatformResult | None:
        raise NeedsManualError(f"{self.slug}: no notice API; nothing was sent automatically")

    async def follow_up(self, reference: str, count: int) -> PlatformResult:
        raise NeedsManualError(
            f"{self.slug}: no notice API; chase the platform by hand at {self.where}",
            reference=reference,
        )

    async def appeal(self, reference: str, note: str) -> PlatformResult:
        raise NeedsManualError(
            f"{self.slug}: no notice API; appeal by hand at {self.where} and record the "
            "answer here",
            reference=reference,
        )

    async def appeal_status(self, reference: str, appeal_reference: str) -> PlatformResult:
        raise NeedsManualError(
            f"{self.slug}: no notice API; the appeal's answer arrives by email",
            reference=reference,
        )

    async def withdraw(self, reference: str) -> bool:
        """False: nothing was sent automatically, so there is nothing to withdraw here (a
        notice a person sent by hand is withdrawn by hand, if the platform allows it)."""
        return False
