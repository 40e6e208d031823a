"""A circuit breaker per platform: a platform that keeps failing is left alone for a while.

Promises:
- *closed*: calls go out. `failures` consecutive failures (retryable errors: timeouts,
  transport errors, 5xx, a 429 without `Retry-After`) open the circuit; any answer from
  the platform (a result, a refusal of the notice itself) resets the count.
- *open*: no call goes out until `open_s` has passed; then exactly one call, the half-open
  probe, is let through. Its success closes the circuit; its failure re-opens it for twice
  as long as the last time (up to `max_open_s`).
- Credentials refused (401/403) open the circuit at once, whatever the count, with the
  reason "credentials refused: configuration error"; `refuse_credentials` reports the first
  such refusal of an incident so that it is logged once, not per escalation.
- A 429 with a `Retry-After` holds every call to the platform until it has passed (at most
  `max_open_s`) and does not count towards the consecutive failures: the platform said when
  to come back. Such a refused probe goes back to waiting for the hold's end, the open period
  unchanged. A 429 without `Retry-After` counts like any other failure.
- Results of calls that started before the circuit opened neither close nor re-open it.

Times are taken from the monotonic clock; `resume_at` gives the wall-clock time at which
calls may resume (stored as the waiting escalations' `next_action_at`).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from helpline_escalator.adapters import base
from helpline_escalator.adapters.base import AdapterError
from helpline_shared.events import utcnow

CREDENTIALS_REFUSED = "credentials refused: configuration error"
STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class BreakerPolicy:
    """`failures` consecutive failures open the circuit for `open_s`, doubling on each
    failed probe up to `max_open_s` (or `open_s`, when that is longer)."""

    failures: int = 5
    open_s: float = 30.0
    max_open_s: float = 600.0


class Pass(enum.Enum):
    """What `admit` grants: an ordinary call, or the single half-open probe."""

    CALL = "call"
    PROBE = "probe"


def is_configuration_error(error: BaseException) -> bool:
    """Credentials refused: the adapter's `ConfigurationError`, or any 401/403 answer."""
    configuration_error = getattr(base, "ConfigurationError", None)
    if configuration_error is not None and isinstance(error, configuration_error):
        return True
    return isinstance(error, AdapterError) and error.http_status in (401, 403)


def failure_label(error: AdapterError) -> str:
    """A short word for the last failure in the circuit's reason: the HTTP status or kind."""
    if error.http_status is not None:
        return str(error.http_status)
    return "timeout" if "timeout" in error.reason or "no answer" in error.reason else "transport"


class CircuitBreaker:
    def __init__(
        self,
        platform: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.platform = platform
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self.state = "closed"
        self.consecutive = 0
        self.last_failure = ""
        self.opened_at: datetime | None = None  # wall clock, for the reason
        self.opens = 0  # times opened since the circuit last closed
        self.credentials_refused = False
        self._resume = 0.0  # monotonic: when the half-open probe may go
        self._held_until = 0.0  # monotonic: the end of a Retry-After

    # -- asking -----------------------------------------------------------------------

    def admit(self) -> Pass | None:
        """May a call go out now? None while open (or the probe is out) or held."""
        now = self._clock()
        if now < self._held_until:
            return None
        if self.state == "closed":
            return Pass.CALL
        if self.state == "open" and now >= self._resume:
            self.state = "half_open"
            return Pass.PROBE
        return None

    def waiting(self) -> bool:
        """True while no call may go out (open before its probe time, probe out, or held)."""
        now = self._clock()
        if now < self._held_until:
            return True
        if self.state == "open":
            return now < self._resume
        return self.state == "half_open"

    def resume_in_s(self) -> float:
        """Seconds until calls may go out again (0 when they may now)."""
        now = self._clock()
        until = self._held_until
        if self.state != "closed":
            until = max(until, self._resume)
        return max(0.0, until - now)

    def resume_at(self) -> datetime:
        return utcnow() + timedelta(seconds=self.resume_in_s())

    @property
    def reason(self) -> str | None:
        """Why this platform's escalations wait, or None when they need not."""
        if self.state != "closed":
            since = self.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.opened_at else "?"
            if self.credentials_refused:
                return f"circuit open for {self.platform} since {since}: {CREDENTIALS_REFUSED}"
            return (
                f"circuit open for {self.platform} since {since}: {self.consecutive} "
                f"consecutive failures (last: {self.last_failure})"
            )
        if self._clock() < self._held_until:
            return f"{self.platform} asked us to wait (Retry-After): rate limited"
        return None

    # -- telling ----------------------------------------------------------------------

    def succeeded(self, granted: Pass) -> None:
        """The platform answered (a result, or a refusal of the notice itself)."""
        if granted is Pass.PROBE or self.state == "closed":
            self._close()

    def failed(self, granted: Pass, error: AdapterError) -> bool:
        """A retryable failure; returns True when it opened (or re-opened) the circuit."""
        if isinstance(error, base.RetryableError) and error.retry_after_s:
            hold = min(error.retry_after_s, self.policy.max_open_s)
            self._held_until = max(self._held_until, self._clock() + hold)
            if error.http_status == 429:  # told when to come back: a pause, not a failure
                self.abandon(granted)
                return False
        if granted is Pass.CALL and self.state != "closed":
            return False  # started before the circuit opened: already counted
        self.consecutive += 1
        self.last_failure = failure_label(error)
        if granted is Pass.PROBE or self.consecutive >= self.policy.failures:
            self._open()
            return True
        return False

    def refuse_credentials(self, granted: Pass) -> bool:
        """Credentials refused: open at once. True only for the first refusal of an
        incident (the one to log at error level)."""
        first = not self.credentials_refused
        if granted is Pass.PROBE or self.state == "closed" or first:
            self.credentials_refused = True
            self.last_failure = "credentials refused"
            self._open()
        return first

    def abandon(self, granted: Pass) -> None:
        """A granted call that never went out: the probe may be granted again."""
        if granted is Pass.PROBE and self.state == "half_open":
            self.state = "open"

    # -- transitions ------------------------------------------------------------------

    def _open(self) -> None:
        # The cap never cuts a configured open period shorter than itself.
        cap = max(self.policy.max_open_s, self.policy.open_s)
        delay = min(cap, self.policy.open_s * 2**self.opens)
        self.opens += 1
        if self.state == "closed":
            self.opened_at = utcnow()
        self.state = "open"
        self._resume = self._clock() + delay

    def _close(self) -> None:
        self.state = "closed"
        self.consecutive = 0
        self.opens = 0
        self.opened_at = None
        self.credentials_refused = False
