"""What each simulated platform calls its states: its pending status and its decisions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlatformSpec:
    slug: str
    pending: str
    takedowns: tuple[str, ...]  # statuses that took the content down, most common first
    other: tuple[str, ...]  # decisions that left it up (first: no violation found)


_META = PlatformSpec(
    "", "PENDING", ("REMOVED", "GEO_BLOCKED", "NOT_AVAILABLE"), ("NOT_ACTIONED", "WARNING_SCREEN")
)

PLATFORMS: dict[str, PlatformSpec] = {
    "tiktok": PlatformSpec(
        "tiktok",
        "IN_REVIEW",
        ("CONTENT_REMOVED", "RESTRICTED_IN_REGION", "CONTENT_NOT_FOUND"),
        ("NO_VIOLATION", "AGE_RESTRICTED"),
    ),
    "instagram": PlatformSpec("instagram", _META.pending, _META.takedowns, _META.other),
    "facebook": PlatformSpec("facebook", _META.pending, _META.takedowns, _META.other),
    "youtube": PlatformSpec(
        "youtube",
        "UNDER_REVIEW",
        ("REMOVED", "VIDEO_UNAVAILABLE"),
        ("NO_ACTION", "AGE_RESTRICTED", "LIMITED_FEATURES"),
    ),
    "x": PlatformSpec(
        "x", "OPEN", ("DELETED", "WITHHELD", "NOT_FOUND"), ("NO_VIOLATION", "LABELED")
    ),
    "snapchat": PlatformSpec("snapchat", "RECEIVED", ("REMOVED", "NOT_FOUND"), ("NO_VIOLATION",)),
}
