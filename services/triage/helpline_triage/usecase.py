"""Triage of opened cases into triaged cases, each decision kept and explained.

Delivery: at least once, one decision per case. A batch's new decisions and the content
their cases reported are stored in one transaction; then the stored event of every case in
the batch is published; the batch's offsets are committed after every triaged event and
dead letter was acknowledged by the broker (dead letters are published by the runner after
the triaged events, once per source position). A redelivered `helpline.cases.opened`, or
one whose decision was stored but not published when the process died, finds its stored
decision and republishes it byte for byte (same event id and `triaged_at`), even if the
rules changed since; consumers drop the duplicate by event id.

Content reported by several cases: a case's `prior_reports` fact is the largest number of
other cases, decided before it (earlier in the same batch included), that reported one of
its URLs' content.

Re-triage: triage also consumes `helpline.practitioner.commands` and applies the action
`retriage` (every other action is the escalator's and is ignored here, valid or not). Each
command makes the case's next decision (:mod:`helpline_triage.override`) on top of its
latest one, stored then published like the first; its event id is derived from the command
id, so a redelivered command republishes the stored decision and changes nothing. Commands
of one case are keyed by its id and applied in the order they come. A command whose case
triage has no decision for is dead-lettered with the reason (casework issues commands only
for cases it saw triaged, and triage stores a decision before publishing it, so such a case
is unknown, not late); a command that is not a valid retriage command is dead-lettered with
what is wrong.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from helpline_shared import cloudevents
from helpline_shared.consumer import DeadLetters, Record, describe
from helpline_shared.db import Database
from helpline_shared.events import CaseOpenedV1, CaseTriagedV1, PractitionerCommandV1, utcnow
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_TRIAGED, PRACTITIONER_COMMANDS
from helpline_triage import repository
from helpline_triage.deadlines import Deadlines
from helpline_triage.decision import decide, read_urls
from helpline_triage.override import override, retriaged_event_id
from helpline_triage.rules import RuleSet

SOURCE = "urn:helpline:triage"
log = get_logger("helpline.triage")


# Fields a decision has only since re-triage: left out of triage's own decision (revision 1),
# so it reads as before for consumers not yet released with them.
OVERRIDE_FIELDS = {"revision", "supersedes", "overridden_by", "override_note"}


def decision_text(event: CaseTriagedV1) -> str:
    """The published text of a decision: a real case's leaves `period_at` out, and triage's
    own decision the override fields (consumers not yet released with them refuse unknown
    fields)."""
    exclude = set() if event.period_at is not None else {"period_at"}
    if event.revision == 1:
        exclude |= OVERRIDE_FIELDS
    return event.model_dump_json(exclude=exclude or None)


def triaged_message(text: str) -> OutgoingMessage:
    """The Kafka message of a stored decision: its exact text, CloudEvents headers from it."""
    event = CaseTriagedV1.model_validate_json(text)
    message = cloudevents.event_message(
        CASES_TRIAGED.name,
        event,
        event_id=event.event_id,
        key=event.case_id,
        type_="helpline.case.triaged.v1",
        source=SOURCE,
        time=event.triaged_at,
        subject=event.case_id,
    )
    return OutgoingMessage(message.topic, text.encode(), message.key, message.headers)


class Triage:
    def __init__(
        self,
        db: Database,
        broker: KafkaBroker,
        dead_letters: DeadLetters,
        rules: RuleSet,
        *,
        clock: Callable[[], datetime] = utcnow,
        settings: Settings | None = None,
    ) -> None:
        self._db = db
        self._broker = broker
        self._dead = dead_letters
        self.rules = rules  # replaceable: stored decisions are republished whatever it says
        self._clock = clock
        self._deadline_seconds = Deadlines.from_settings(rules, settings).seconds

    @property
    def deadlines(self) -> Deadlines:
        """Each urgency's deadline: the settings' seconds where set, else the rules' hours."""
        return Deadlines(self.rules, self._deadline_seconds)

    async def process(self, records: Sequence[Record]) -> None:
        """Decides every valid case not yet decided and applies every valid re-triage,
        stores, then publishes the stored event of every valid case (then each re-triage's
        decision, in order); marks the others dead (the runner publishes them after this
        returns)."""
        cases: list[CaseOpenedV1] = []
        commands: list[PractitionerCommandV1] = []
        refused: list[tuple[Record, str]] = []
        commanded: list[tuple[Record, PractitionerCommandV1]] = []
        for record in records:
            if record.topic == PRACTITIONER_COMMANDS.name:
                command, error = _retriage_command(record)
                if error is not None:
                    refused.append((record, error))
                elif command is not None:
                    commanded.append((record, command))
                continue
            try:
                cases.append(CaseOpenedV1.model_validate_json(record.value or b""))
            except ValidationError as exc:
                refused.append((record, f"invalid case.opened: {describe(exc)}"))
        if commanded:
            # Known before admitting, so the bound counts each refusal once.
            known = {c.case_id for c in cases}
            async with self._db.pool.acquire() as conn:
                known |= await repository.decided_cases(conn, [c.case_id for _, c in commanded])
            for record, command in commanded:
                if command.case_id in known:
                    commands.append(command)
                else:
                    refused.append((record, _unknown_case(command)))
        self._dead.admit(records, [r for r, _ in refused])
        texts = await self._triage(cases)
        texts += await self._retriage(commands)
        await publish_all(self._broker, [triaged_message(t) for t in texts])
        for record, error in refused:
            self._dead.add(record, error)

    async def _retriage(self, commands: Sequence[PractitionerCommandV1]) -> list[str]:
        """Applies each command not applied before, in order, on top of its case's latest
        decision; returns the stored text of each command's decision."""
        if not commands:
            return []
        out: list[str] = []
        deadlines = self.deadlines
        async with self._db.pool.acquire() as conn, conn.transaction():
            for command in commands:
                await repository.lock_case(conn, command.case_id)
                done = await repository.event_text(conn, retriaged_event_id(command))
                if done is not None:  # redelivered: the decision it made is republished
                    out.append(done)
                    continue
                latest = await repository.latest(conn, command.case_id)
                if latest is None:  # checked before; kept for a case erased meanwhile
                    raise LookupError(_unknown_case(command))
                previous = CaseTriagedV1.model_validate_json(latest[0])
                event = override(previous, command, deadlines, self._clock())
                text = decision_text(event)
                source = deadlines.of(event.urgency).source
                await repository.save(
                    conn, [repository.Decision(event, text, latest[1], (), source)]
                )
                with bind_event(case_id=command.case_id, event_id=event.event_id):
                    log.info(
                        "case re-triaged",
                        revision=event.revision,
                        urgency=event.urgency,
                        route=event.route,
                        actor=command.actor,
                    )
                out.append(text)
        return out

    async def _triage(self, cases: Sequence[CaseOpenedV1]) -> list[str]:
        """Decides and stores every case not yet decided; returns the stored text of each
        case's own decision, in order."""
        if not cases:
            return []
        deadlines = self.deadlines
        ids = list(dict.fromkeys(c.case_id for c in cases))
        async with self._db.pool.acquire() as conn, conn.transaction():
            stored = await repository.stored_events(conn, ids)
            new: dict[uuid.UUID, CaseOpenedV1] = {}
            for case in cases:  # a case twice in a batch: its first delivery is decided
                if case.case_id not in stored:
                    new.setdefault(case.case_id, case)
            read = {case_id: read_urls(case) for case_id, case in new.items()}
            contents = {
                case_id: [u.content for u in urls if u.content] for case_id, urls in read.items()
            }
            counts = Counter(
                await repository.report_counts(conn, (k for ks in contents.values() for k in ks))
            )
            decisions: list[repository.Decision] = []
            for case_id, case in new.items():
                mine = list(dict.fromkeys(contents[case_id]))
                prior = max((counts[k] for k in mine), default=0)
                counts.update(mine)
                event = decide(
                    self.rules, case, read[case_id], prior, self._clock(), deadlines=deadlines
                )
                text = decision_text(event)
                source = deadlines.of(event.urgency).source
                decisions.append(repository.Decision(event, text, prior, mine, source))
                with bind_event(case_id=case_id, event_id=event.event_id):
                    log.debug("case triaged", urgency=event.urgency, route=event.route, prior=prior)
            await repository.save(conn, decisions)
            if decisions:  # a concurrent consumer may have decided one first: its event wins
                stored = await repository.stored_events(conn, ids)
        return [stored[i] for i in ids]


def _unknown_case(command: PractitionerCommandV1) -> str:
    return (
        f"retriage command {command.command_id}: triage has no decision for case "
        f"{command.case_id} (unknown case); replay it once the case is triaged"
    )


def _retriage_command(record: Record) -> tuple[PractitionerCommandV1 | None, str | None]:
    """The record's command if it is a `retriage`; (None, None) for another action (the
    escalator's to apply or refuse); (None, why) for a record that is no valid retriage."""
    raw = record.value or b""
    try:
        command = PractitionerCommandV1.model_validate_json(raw)
    except ValidationError as exc:
        try:
            action = json.loads(raw).get("action")
        except (ValueError, AttributeError):
            action = None
        if isinstance(action, str) and action != "retriage":
            return None, None
        return None, f"invalid practitioner.command: {describe(exc)}"
    if command.action != "retriage":
        return None, None
    change = command.retriage
    if (
        change is not None
        and "child_sexual_imagery" in change.harm_types
        and change.route == "platform"
    ):
        return None, (
            "invalid practitioner.command: child sexual imagery goes to the national "
            "hotline, never to a platform's notice channel (route platform refused)"
        )
    return command, None
