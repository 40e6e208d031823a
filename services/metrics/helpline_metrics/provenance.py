"""Which events metrics may count: those from the producer the topic registry names.

A defence in depth, not the boundary. The boundary is the broker: in production each
service writes with its own principal and the ACLs let it write only the topics the registry
says it produces (see deploy/ and docs/operations.md). Metrics also refuses, as a dead
letter with the reason and never counted:

- an event whose CloudEvents `ce_source` header is missing or is not the source of a
  producer the registry names for its topic (an outcome must come from the escalator);
- an event naming a platform metrics does not know (an outcome, or a triaged URL), so a
  forged event cannot add a platform to the totals.

The registry (:mod:`helpline_shared.topics`) names producers but not their CloudEvents
sources, so the map from producer to source is kept here; a test checks it against the
`SOURCE` each service stamps on its events, and `PLATFORMS` against triage's platform table
and the escalator's slugs.
"""

from __future__ import annotations

from collections.abc import Iterable

from helpline_shared.deadletters import Record
from helpline_shared.topics import ALL_TOPICS

# Producer (as the registry names it) -> the `ce_source` its events carry.
SOURCES: dict[str, str] = {
    "intake": "urn:helpline:intake",
    "triage": "urn:helpline:triage",
    "escalator": "urn:helpline:escalator",
}

# The platforms triage names and the escalator escalates to, and `unknown`: a URL on no
# known platform (the hotline and manual routes keep the URL's platform, often `unknown`).
PLATFORMS = frozenset(
    {
        "discord",
        "facebook",
        "instagram",
        "reddit",
        "roblox",
        "snapchat",
        "telegram",
        "threads",
        "tiktok",
        "twitch",
        "whatsapp",
        "x",
        "youtube",
        "unknown",
    }
)


def expected_sources(topic: str) -> frozenset[str]:
    """The `ce_source` values of the producers the registry names for `topic`."""
    for t in ALL_TOPICS:
        if t.name == topic:
            return frozenset(SOURCES[p] for p in t.producers if p in SOURCES)
    return frozenset()


def header(record: Record, name: str) -> str | None:
    """The first value of header `name`, as text (None when absent)."""
    for key, value in record.headers or ():
        if key == name:
            return (value or b"").decode("utf-8", "replace")
    return None


def refusal(record: Record, platforms: Iterable[str]) -> str | None:
    """Why metrics must not count `record` (whose event names `platforms`), or None."""
    expected = expected_sources(record.topic)
    source = header(record, "ce_source")
    if source is None:
        return f"forged {record.topic}: no ce_source header (expected {_one_of(expected)})"
    if source not in expected:
        return (
            f"forged {record.topic}: ce_source {source[:100]!r} is not its registered "
            f"producer ({_one_of(expected)})"
        )
    unknown = sorted(set(platforms) - PLATFORMS)
    if unknown:
        named = ", ".join(repr(p[:50]) for p in unknown[:5])
        return f"forged {record.topic}: unknown platform {named}"
    return None


def _one_of(sources: frozenset[str]) -> str:
    return " or ".join(sorted(sources)) or "no producer"
