"""The circuit breaker's rules, on a clock the test moves: it opens after N consecutive
failures, lets exactly one probe through after the open period, closes on the probe's
success and re-opens for longer on its failure; credentials refused open it at once and
are reported once; a Retry-After holds every call without opening it."""

from __future__ import annotations

from helpline_escalator.adapters.base import PermanentError, RetryableError
from helpline_escalator.breaker import (
    CREDENTIALS_REFUSED,
    BreakerPolicy,
    CircuitBreaker,
    Pass,
    is_configuration_error,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unavailable() -> RetryableError:
    return RetryableError("tiktok: server error 503", http_status=503)


def breaker(clock: Clock, failures: int = 3, open_s: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker("tiktok", BreakerPolicy(failures, open_s, max_open_s=35.0), clock=clock)


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(2):
        assert b.admit() is Pass.CALL
        assert not b.failed(Pass.CALL, unavailable())
    b.succeeded(Pass.CALL)
    assert b.consecutive == 0
    for _ in range(2):
        assert not b.failed(Pass.CALL, unavailable())
    assert b.failed(Pass.CALL, unavailable())
    assert b.state == "open"
    assert b.admit() is None
    assert b.waiting()
    reason = b.reason
    assert reason is not None
    assert reason.startswith("circuit open for tiktok since ")
    assert reason.endswith(": 3 consecutive failures (last: 503)")


def test_one_probe_after_the_open_period_and_its_success_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failed(Pass.CALL, unavailable())
    clock.now += 9.9
    assert b.admit() is None
    assert round(b.resume_in_s(), 1) == 0.1
    clock.now += 0.1
    assert b.admit() is Pass.PROBE
    assert b.state == "half_open"
    assert b.admit() is None  # only one probe at a time
    b.succeeded(Pass.PROBE)
    assert b.state == "closed"
    assert b.reason is None
    assert b.admit() is Pass.CALL


def test_a_failed_probe_reopens_for_longer_up_to_the_cap() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failed(Pass.CALL, unavailable())
    waits = []
    for _ in range(4):
        waits.append(round(b.resume_in_s()))
        clock.now += b.resume_in_s()
        assert b.admit() is Pass.PROBE
        assert b.failed(Pass.PROBE, unavailable())
        assert b.state == "open"
    assert waits == [10, 20, 35, 35]


def test_late_results_of_calls_started_before_the_open_change_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failed(Pass.CALL, unavailable())
    waiting = b.resume_in_s()
    assert not b.failed(Pass.CALL, unavailable())
    b.succeeded(Pass.CALL)
    assert b.state == "open"
    assert b.resume_in_s() == waiting


def test_an_abandoned_probe_may_be_granted_again() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failed(Pass.CALL, unavailable())
    clock.now += 10
    assert b.admit() is Pass.PROBE
    b.abandon(Pass.PROBE)
    assert b.admit() is Pass.PROBE


def test_credentials_refused_open_at_once_and_are_reported_once() -> None:
    clock = Clock()
    b = breaker(clock)
    refused = PermanentError("tiktok: refused with 401", http_status=401)
    assert is_configuration_error(refused)
    assert not is_configuration_error(PermanentError("bad notice", http_status=422))
    assert b.refuse_credentials(Pass.CALL)
    assert b.state == "open"
    assert b.reason is not None
    assert b.reason.endswith(CREDENTIALS_REFUSED)
    assert not b.refuse_credentials(Pass.CALL)  # another escalation of the same incident
    clock.now += b.resume_in_s()
    assert b.admit() is Pass.PROBE
    assert not b.refuse_credentials(Pass.PROBE)  # still refused: re-opened, not re-reported
    assert b.state == "open"
    clock.now += b.resume_in_s()
    assert b.admit() is Pass.PROBE
    b.succeeded(Pass.PROBE)
    assert b.state == "closed"
    assert b.refuse_credentials(Pass.CALL)  # a new incident is reported again


def test_retry_after_holds_every_call_without_opening() -> None:
    clock = Clock()
    b = breaker(clock)
    limited = RetryableError("tiktok: rate limited", http_status=429, retry_after_s=2.0)
    assert not b.failed(Pass.CALL, limited)
    assert b.state == "closed"
    assert b.admit() is None
    assert b.reason is not None
    assert "Retry-After" in b.reason
    clock.now += 1.99
    assert b.admit() is None
    clock.now += 0.01
    assert b.admit() is Pass.CALL
    assert b.reason is None


def test_a_retry_after_hold_is_capped() -> None:
    clock = Clock()
    b = breaker(clock)
    b.failed(Pass.CALL, RetryableError("x", http_status=429, retry_after_s=10**9))
    assert b.resume_in_s() == 35.0


def test_an_open_period_longer_than_the_default_cap_is_kept_not_cut() -> None:
    """BREAKER_OPEN_S=900 means 900 s, though the doubling stops at 600 s by default."""
    clock = Clock()
    b = CircuitBreaker("tiktok", BreakerPolicy(failures=1, open_s=900.0), clock=clock)

    assert b.failed(Pass.CALL, unavailable())
    assert b.resume_in_s() == 900.0
    clock.now += 900.0
    assert b.admit() is Pass.PROBE
    b.failed(Pass.PROBE, unavailable())
    assert b.resume_in_s() == 900.0  # no shorter on a failed probe


def test_a_429_with_retry_after_never_counts_towards_opening() -> None:
    clock = Clock()
    b = breaker(clock, failures=3)
    limited = RetryableError("tiktok: rate limited", http_status=429, retry_after_s=1.0)
    for _ in range(10):
        assert b.admit() is Pass.CALL
        assert not b.failed(Pass.CALL, limited)
        assert b.state == "closed"
        assert b.consecutive == 0
        clock.now += 1.0
    # Without Retry-After a 429 is a failure like any other.
    bare = RetryableError("tiktok: rate limited", http_status=429)
    assert not b.failed(Pass.CALL, bare)
    assert not b.failed(Pass.CALL, bare)
    assert b.failed(Pass.CALL, bare)
    assert b.state == "open"


def test_a_probe_told_to_retry_after_waits_and_probes_again_without_doubling() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, open_s=10.0)
    assert b.failed(Pass.CALL, unavailable())
    clock.now += 10.0
    assert b.admit() is Pass.PROBE
    limited = RetryableError("tiktok: rate limited", http_status=429, retry_after_s=3.0)
    assert not b.failed(Pass.PROBE, limited)
    assert b.state == "open"
    assert b.resume_in_s() == 3.0  # the hold, not a doubled open period
    clock.now += 3.0
    assert b.admit() is Pass.PROBE
