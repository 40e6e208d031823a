"""The contract every platform adapter implements, and the notice it sends.

Adapters get one injected HTTP client session and their platform's settings, never
swallow errors and never return None for a failure: they return a result or raise
:class:`RetryableError`, :class:`PermanentError`, :class:`NeedsManualError` or
:class:`ConfigurationError`.

After the notice, an adapter re-notifies the platform (`follow_up`, citing the notice's
reference: never a second notice), contests a decision on the platform's appeal route
(`appeal`, then `appeal_status`) and withdraws a pending notice (`withdraw`). A platform
without such a route answers as its adapter says: a person must act (`NeedsManualError`)
or, for a withdrawal, `False`.
"""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from helpline_shared.events import Decision

# DSA statement-of-reasons categories (v2) for each harm type.
DSA_CATEGORY = {
    "online_reputation": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "bullying_harassment": "STATEMENT_CATEGORY_CYBER_VIOLENCE",
    "impersonation": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "school_branding_misuse": "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "privacy_images_doxxing": "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    "threats_risk_to_life": "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "child_sexual_imagery": "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "self_harm": "STATEMENT_CATEGORY_SELF_HARM",
    "hate": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "scams": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "other": "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
}

GOOD_FAITH = (
    "I confirm my bona fide belief that the information and allegations in this notice are "
    "accurate and complete."
)


@dataclass(frozen=True)
class Notice:
    """A DSA Article 16 notice for one URL. `client_reference` is our escalation id;
    `harm_types` run most severe first, so the first decides the category, unless triage's
    rules gave one (`category`, and `reason_code`, the platform's own code): they win."""

    client_reference: uuid.UUID
    url: str
    harm_types: tuple[str, ...]
    urgency: str
    explanation: str
    notifier_name: str
    notifier_email: str
    good_faith_statement: str = GOOD_FAITH
    category: str | None = None
    reason_code: str | None = None

    @property
    def dsa_category(self) -> str:
        if self.category:
            return self.category
        lead = self.harm_types[0] if self.harm_types else "other"
        return DSA_CATEGORY.get(lead, "STATEMENT_CATEGORY_OTHER_VIOLATION_TC")


@dataclass(frozen=True)
class PlatformResult:
    """What the platform says about a notice: its reference and a decision, once made,
    and the HTTP status of the answer that said so (recorded on the call's attempt)."""

    reference: str
    decision: Decision | None = None
    http_status: int | None = field(default=None, compare=False)  # not what it says


class AdapterError(Exception):
    def __init__(self, reason: str, *, http_status: int | None = None) -> None:
        reason = reason.replace("\x00", "")  # it is stored as text; PostgreSQL refuses NUL
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status


class RetryableError(AdapterError):
    """Try again later (rate limited, platform error, timeout).

    `maybe_received` is true when the platform may have acted on the request even though
    we got no answer (timeout, dropped connection, most 5xx): a submit is then looked up,
    not re-sent.
    """

    def __init__(
        self,
        reason: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        maybe_received: bool = False,
    ) -> None:
        super().__init__(reason, http_status=http_status)
        self.retry_after_s = retry_after_s
        self.maybe_received = maybe_received


class PermanentError(AdapterError):
    """The platform refused the notice itself; retrying would not help."""


class NeedsManualError(AdapterError):
    """A practitioner must decide: no automated channel, or an answer we cannot read.

    `reference` is the platform's reference when it gave one (an accepted notice whose
    status word we do not know): it is kept on the escalation, never lost.
    """

    def __init__(
        self, reason: str, *, http_status: int | None = None, reference: str | None = None
    ) -> None:
        super().__init__(reason, http_status=http_status)
        self.reference = reference


class ConfigurationError(AdapterError):
    """The platform refused our credentials (401 or 403): our configuration is wrong, so
    calling again will not help until it is fixed. The reason names the platform and says
    "credentials refused"; it never holds a secret."""


class PlatformAdapter(abc.ABC):
    """One platform's reporting channel.

    `settle_s` is how long after sending a notice the platform may still store it (a
    request that timed out can be processed later): a lookup that finds nothing proves the
    notice never arrived only once this long has passed since it was sent.
    """

    slug: str
    settle_s: float = 60.0
    # What the platform offers, unless its settings say otherwise.
    status_lookup: ClassVar[bool] = True
    appeals: ClassVar[bool] = False
    withdrawal: ClassVar[bool] = False
    auth: ClassVar[str] = "bearer"  # how it takes credentials (see `notice_api.py`)
    path: ClassVar[str] = ""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The adapter's own defaults for the settings a deployment may override."""
        return {
            "path": cls.path,
            "settle_s": cls.settle_s,
            "status_lookup": cls.status_lookup,
            "appeals": cls.appeals,
            "withdrawal": cls.withdrawal,
            "auth": cls.auth,
        }

    @abc.abstractmethod
    async def submit(self, notice: Notice) -> PlatformResult:
        """Send the notice once. Raises on failure; never sends twice on its own."""

    @abc.abstractmethod
    async def status(self, reference: str) -> PlatformResult:
        """The platform's current view of a notice it accepted."""

    @abc.abstractmethod
    async def lookup(self, client_reference: uuid.UUID) -> PlatformResult | None:
        """Find a notice by our reference (after an unclear submit); None only when the
        platform itself says it holds none (not for an answer from a missing route)."""

    async def follow_up(self, reference: str, count: int) -> PlatformResult:
        """Re-notify the platform about the notice it accepted as `reference`, whose
        decision is overdue: the `count`th follow-up (from 1), citing the reference. Never
        a second notice: the platform counts it against the notice it has. Sent once per
        call (not idempotent: a retry after an unclear answer may count twice). Returns the
        notice's current view (its decision, if made). This default: no follow-up route."""
        raise NeedsManualError(f"{self.slug}: no follow-up route; chase the platform by hand")

    async def appeal(self, reference: str, note: str) -> PlatformResult:
        """Contest the platform's decision on the notice `reference` on its appeal route,
        with the practitioner's `note`. Returns the appeal: its own reference and, if the
        platform decided it at once, the new decision. Repeating an appeal of the same
        notice answers the same appeal (the platform's route is idempotent per notice).
        This default: no appeal route."""
        raise NeedsManualError(f"{self.slug}: no appeal route; appeal by hand")

    async def appeal_status(self, reference: str, appeal_reference: str) -> PlatformResult:
        """The appeal `appeal_reference` of the notice `reference`: its decision (the
        platform's new decision on the content) once decided, else None (pending)."""
        raise NeedsManualError(f"{self.slug}: no appeal route; its answer arrives by hand")

    async def withdraw(self, reference: str) -> bool:
        """Withdraw the pending notice `reference`: True once the platform withdrew it (or
        had already), False where the platform offers no withdrawal (the notice stands).
        Raises `PermanentError` when the platform refuses (it already decided). This
        default: no withdrawal."""
        return False

    async def withdraw_answered(self, reference: str) -> tuple[bool, int | None]:
        """`withdraw`, with the HTTP status the platform answered with (None when no call
        was made), for the call's attempt. This default: `withdraw`'s answer, no status."""
        return await self.withdraw(reference), None
