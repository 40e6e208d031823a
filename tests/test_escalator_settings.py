"""Escalation settings are checked at start-up: a value that would make every call fail
is refused with a message naming the setting (hole 7)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from helpline_shared.settings import load_settings


def test_a_lease_too_short_for_one_call_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_ESCALATION_CLAIM_LEASE_S", "15")
    monkeypatch.setenv("HELPLINE_PLATFORM_TIMEOUT_S", "10")
    with pytest.raises(ValidationError, match="HELPLINE_ESCALATION_CLAIM_LEASE_S"):
        load_settings()


def test_a_retry_cap_below_its_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="HELPLINE_ESCALATION_RETRY_MAX_S"):
        load_settings(escalation_retry_base_s=10, escalation_retry_max_s=1)


def test_a_status_cap_below_its_interval_is_refused() -> None:
    with pytest.raises(ValidationError, match="HELPLINE_ESCALATION_STATUS_MAX_INTERVAL_S"):
        load_settings(escalation_status_interval_s=10, escalation_status_max_interval_s=1)


def test_a_rate_below_one_per_second_is_valid() -> None:
    assert load_settings(platform_rate_per_s=0.2).platform_rate_per_s == 0.2


@pytest.mark.parametrize(
    "variable", ["HELPLINE_ESCALATION_CLAIM_LEASE_S", "HELPLINE_GRACEFUL_TIMEOUT_S"]
)
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_duration_that_is_not_finite_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    field = variable.removeprefix("HELPLINE_").lower()
    with pytest.raises(ValidationError, match=f"(?i){field}"):
        load_settings()
