"""The manual channel: for URLs with no automated route, a practitioner escalates by hand.

Submitting through it records the escalation as `needs_manual` with the reason; it never
contacts anyone by itself.
"""

from __future__ import annotations

import uuid

from helpline_escalator.adapters.base import (
    NeedsManualError,
    Notice,
    PlatformAdapter,
    PlatformResult,
)


class ManualChannel(PlatformAdapter):
    slug = "manual"

    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def submit(self, notice: Notice) -> PlatformResult:
        raise NeedsManualError(self._reason)

    async def status(self, reference: str) -> PlatformResult:
        raise NeedsManualError(self._reason)

    async def lookup(self, client_reference: uuid.UUID) -> PlatformResult | None:
        return None
