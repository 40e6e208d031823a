"""A practitioner's override of a triage decision (`retriage`), pure: the decision it
supersedes and the command in, the superseding decision out.

The new decision takes the override's harm types (most severe first; the first leads the
notices), urgency and route; it keeps what the superseded decision was made from (rules
fired, their matches, the rules version, the case's URLs and their ids), so the case's
history shows both. Each URL follows the new route as triage would route it: to the hotline
(a hotline takes any readable URL), to its platform where triage knows the platform (an
adapter exists) else to a person with the reason, or to a person. A URL triage cannot read
(unreadable, too long, found only in the description on no known platform) waits for a
person whatever the route. The decision is due the new urgency's deadline after the case
was received. Given the same decision, command, rules, deadlines and clock it always
returns the same event; its id is derived from the command id, so a redelivered command
gives the same event.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from helpline_shared.events import (
    CaseTriagedV1,
    PractitionerCommandV1,
    Route,
    TriagedUrl,
    derive_id,
)
from helpline_triage.deadlines import Deadlines
from helpline_triage.decision import read_url

RETRIAGED_TO_MANUAL = "a practitioner's re-triage routed it to a person"


class OverrideError(ValueError):
    """The command cannot be applied to this decision (the reason names why)."""


def retriaged_event_id(command: PractitionerCommandV1) -> uuid.UUID:
    """The id of the decision a re-triage command makes, whatever the time it is applied."""
    return derive_id("case.retriaged", command.command_id)


def _route_url(u: TriagedUrl, route: Route) -> tuple[Route, str | None]:
    read = read_url(u.url, u.origin)
    if read.reason is not None:
        return "manual", read.reason
    if route == "hotline":
        return "hotline", None
    if route == "platform":
        if u.platform == "unknown":
            return "manual", read.note or "no adapter for its platform: a person escalates it"
        return "platform", None
    return "manual", RETRIAGED_TO_MANUAL


def override(
    previous: CaseTriagedV1,
    command: PractitionerCommandV1,
    deadlines: Deadlines,
    now: datetime,
) -> CaseTriagedV1:
    """The decision superseding `previous` by `command` (action `retriage`)."""
    change = command.retriage
    if command.action != "retriage" or change is None:
        raise OverrideError(f"action {command.action} is not a re-triage")
    if command.case_id != previous.case_id:
        raise OverrideError("the command's case is not the decision's case")
    rules = deadlines.rules
    harm_types = rules.most_severe_first(change.harm_types)
    lead = harm_types[0]
    dsa = rules.dsa_category(lead)
    urls: list[TriagedUrl] = []
    for u in previous.urls:
        route, reason = _route_url(u, change.route)
        urls.append(
            u.model_copy(
                update={
                    "route": route,
                    "reason": reason,
                    "dsa_category": dsa,
                    "reason_code": rules.reason_code(lead, u.platform),
                }
            )
        )
    return CaseTriagedV1(
        event_id=retriaged_event_id(command),
        case_id=previous.case_id,
        received_at=previous.received_at,
        triaged_at=now,
        harm_types=harm_types,
        urgency=change.urgency,
        route=change.route,
        rules_fired=list(previous.rules_fired),
        urls=urls,
        rules_version=previous.rules_version,
        lead_harm_type=lead,
        decision_due_at=previous.received_at + deadlines.of(change.urgency).after,
        matches=list(previous.matches),
        rejected_urls=[],
        period_at=previous.period_at,
        revision=previous.revision + 1,
        supersedes=previous.event_id,
        overridden_by=command.actor,
        override_note=command.note,
    )
