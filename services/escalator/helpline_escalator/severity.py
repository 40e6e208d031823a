"""The severity and urgency orders, kept in data (`severity.json`), not in code.

Promises: a notice names the case's most severe harm first (its DSA category and the
platform's reason code come from it); escalations are claimed most urgent first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Orders:
    harm_types: tuple[str, ...]  # most severe first
    urgencies: tuple[str, ...]  # most urgent first


@cache
def orders() -> Orders:
    """The orders from `severity.json`, read once on first use."""
    text = (resources.files("helpline_escalator") / "severity.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return Orders(
        tuple(data["harm_types_most_severe_first"]), tuple(data["urgency_most_urgent_first"])
    )


def most_severe_first(harm_types: Iterable[str]) -> tuple[str, ...]:
    """`harm_types` ordered most severe first; unlisted types last, in their given order."""
    rank = {h: i for i, h in enumerate(orders().harm_types)}
    return tuple(sorted(harm_types, key=lambda h: rank.get(h, len(rank))))
