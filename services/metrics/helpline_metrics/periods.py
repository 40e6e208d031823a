"""Filters of the figures: a period (a year or a month, UTC), a platform and a harm type.

A period is the year or month a case was received by intake (`received_at`); an escalation
belongs to the period in which the first report of its content was received. A simulated
case (`helpline simulate`, a source in the `simulated:` namespace) belongs to the period it
was published in (`CaseTriagedV1.period_at`), and so does its content; its durations
still run from when intake received it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


class FilterError(ValueError):
    """A filter that cannot be understood (a malformed period)."""


@dataclass(frozen=True)
class Filters:
    """What the figures are restricted to; every field None means all time, everything."""

    period: str | None = None
    platform: str | None = None
    harm_type: str | None = None

    @property
    def empty(self) -> bool:
        return self.period is None and self.platform is None and self.harm_type is None

    def bounds(self) -> tuple[datetime, datetime] | None:
        """The period as a half-open UTC range [start, end), or None for all time."""
        return period_bounds(self.period) if self.period is not None else None

    def as_dict(self) -> dict[str, str | None]:
        return {"period": self.period, "platform": self.platform, "harm_type": self.harm_type}


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """`2024` -> [2024-01-01, 2025-01-01); `2024-03` -> [2024-03-01, 2024-04-01), in UTC."""
    m = _PERIOD.match(period)
    if m is None:
        raise FilterError(f"period must be YYYY or YYYY-MM, not {period[:20]!r}")
    year = int(m.group(1))
    if m.group(2) is None:
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    month = int(m.group(2))
    if not 1 <= month <= 12:
        raise FilterError(f"month must be 01 to 12, not {m.group(2)!r}")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


class Where:
    """SQL conditions with numbered parameters, built from the filters for one table."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[object] = []

    def add(self, sql: str, *values: object) -> None:
        """`sql` with `{}` for each value, replaced by the parameters' numbers."""
        numbers = []
        for v in values:
            self.params.append(v)
            numbers.append(f"${len(self.params)}")
        self.conditions.append(sql.format(*numbers))

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions) or "true"
