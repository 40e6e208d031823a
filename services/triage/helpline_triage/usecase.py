"""Triage of opened cases into triaged cases.

Pure and deterministic: the same `helpline.cases.opened` event always produces the same
`helpline.cases.triaged` event (same event id, uuid5 of the case id), so redelivery yields
duplicates that consumers drop. Delivery: at least once; the batch's offsets are committed
after every triaged event and dead letter was acknowledged by the broker (dead letters are
published by the runner after the triaged events, once per source position).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from helpline_shared import cloudevents
from helpline_shared.consumer import DeadLetters, Record, describe
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    Route,
    TriagedUrl,
    derive_id,
    utcnow,
)
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.topics import CASES_TRIAGED
from helpline_triage.rules import RuleSet
from helpline_triage.urls import UrlRules

SOURCE = "urn:helpline:triage"
MAX_NORMALIZED_BYTES = 2000  # PostgreSQL's btree rows hold at most 2,704 bytes
log = get_logger("helpline.triage")


class Triage:
    def __init__(self, broker: KafkaBroker, dead_letters: DeadLetters, rules: RuleSet) -> None:
        self._broker = broker
        self._dead = dead_letters
        self._rules = rules
        self._urls = UrlRules(rules.data["platforms"], rules.data["tracking_parameters"])

    def triage(self, case: CaseOpenedV1) -> CaseTriagedV1:
        c = self._rules.classify(case.description, list(case.issue_types))
        urls: dict[str, TriagedUrl] = {}
        for url in case.urls:
            reason: str | None = None
            try:
                normalized = self._urls.normalize(url)
            except ValueError as exc:
                # Never dropped: it waits for a person, with the reason (which echoes nothing).
                normalized, reason = url.strip(), f"the URL cannot be read: it {exc}"
            if reason is None and len(normalized.encode()) > MAX_NORMALIZED_BYTES:
                # Percent-encoding can make a URL within intake's limit too long to index:
                # a person looks at it; the key keeps a digest of the whole.
                digest = hashlib.sha256(normalized.encode()).hexdigest()
                cut = normalized.encode()[:1800].decode("utf-8", "ignore")
                normalized, reason = (
                    f"{cut}#sha256={digest}",
                    f"the URL is over {MAX_NORMALIZED_BYTES} bytes once normalised",
                )
            if normalized in urls:
                continue
            platform = "unknown" if reason else self._urls.platform(normalized)
            route: Route = "manual" if reason else c.route
            if route == "platform" and platform == "unknown":
                route = "manual"
            urls[normalized] = TriagedUrl(
                url_id=derive_id("url", case.case_id, normalized),
                url=url,
                normalized_url=normalized,
                platform=platform,
                route=route,
                reason=reason,
            )
        return CaseTriagedV1(
            event_id=derive_id("case.triaged", case.case_id),
            case_id=case.case_id,
            received_at=case.received_at,
            triaged_at=utcnow(),
            harm_types=c.harm_types,
            urgency=c.urgency,
            route=c.route,
            rules_fired=[f"{self._rules.version}:{r}" for r in c.rules_fired],
            urls=list(urls.values()),
        )

    async def process(self, records: Sequence[Record]) -> None:
        """Publishes the triaged event of every valid case; marks the others dead (the
        runner publishes them after this returns)."""
        cases: list[CaseOpenedV1] = []
        refused: list[tuple[Record, str]] = []
        for record in records:
            try:
                cases.append(CaseOpenedV1.model_validate_json(record.value or b""))
            except ValidationError as exc:
                refused.append((record, f"invalid case.opened: {describe(exc)}"))
        self._dead.admit(records, [r for r, _ in refused])
        out: list[OutgoingMessage] = []
        for case in cases:
            triaged = self.triage(case)
            with bind_event(case_id=case.case_id, event_id=triaged.event_id):
                log.debug("case triaged", urgency=triaged.urgency, route=triaged.route)
            out.append(
                cloudevents.event_message(
                    CASES_TRIAGED.name,
                    triaged,
                    event_id=triaged.event_id,
                    key=case.case_id,
                    type_="helpline.case.triaged.v1",
                    source=SOURCE,
                    time=triaged.triaged_at,
                    subject=case.case_id,
                )
            )
        await publish_all(self._broker, out)
        for record, error in refused:
            self._dead.add(record, error)
