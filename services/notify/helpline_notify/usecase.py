"""Notify's work on a batch of events: what it must remember of each case, and the emails
to its reporter that the batch makes due.

Notify follows `helpline.cases.opened` (source, report id), `helpline.cases.reporters` (the
reporter's email; a null reporter = erased), `helpline.cases.triaged` (the case's URLs) and
`helpline.escalations.outcomes` (each URL's state), in any order between topics.

Delivery, per message: at least once in, applied exactly once (an inbox of event ids). Each
batch is one transaction that applies the events, then queues in the mail outbox (see
:mod:`helpline_notify.mail`) whatever they made due, so an email is queued exactly when the
event that called for it was applied:

- the **receipt** (key `receipt:<case_id>`): once the case is opened and its reporter has an
  email, unless its source is in `receipt_opt_out_sources` (that source tells its own users)
  or is a simulated one (`helpline simulate`'s reporters are made up); it carries a new
  private status link (:mod:`helpline_notify.status_links`);
- the **outcome** (key `outcome:<case_id>`): once, in addition, every URL of the case's
  current triage decision has a final state (`decided`, `failed`, `closed`, `withdrawn`,
  `appeal_decided`; `needs_manual` is not final), each URL's latest state by `occurred_at`.

Each email is queued once per case (a marker on the case and the outbox's key), whatever is
redelivered or replayed. An erased reporter (null reporter) loses their email at once, from
the case and from every email queued to them (unsent ones are never sent), and gets nothing
more; older details arriving after the erasure are ignored. Alerts
(:mod:`helpline_notify.alerts`) are queued in the same transaction.

A message that is not a valid event of its topic goes to `helpline.notify.dlq` with the
reason (the reporter redacted: :func:`redact`). No personal data is logged.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from pydantic import BaseModel

from helpline_notify import alerts, status_links
from helpline_notify.emails import HOTLINE, HOTLINE_LINK, outcome_words, platform_name, render
from helpline_notify.mail import Outgoing, queue_mails
from helpline_shared.consumer import DeadLetters, Record, admit_by_topic
from helpline_shared.db import Conn, Database
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationOutcomeV1,
    ReporterDetailsV1,
    case_reference,
    is_simulated_source,
)
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASE_REPORTERS,
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_OUTCOMES,
)

MODELS: dict[str, type[BaseModel]] = {
    t.name: t.model
    for t in (CASES_OPENED, CASE_REPORTERS, CASES_TRIAGED, ESCALATION_OUTCOMES)
    if t.model
}
TOPICS = tuple(MODELS)
REDACTED = "[redacted]"
FINAL_STATES = frozenset({"decided", "failed", "closed", "withdrawn", "appeal_decided"})
REPORTER_KINDS = ("receipt", "outcome")
PLATFORM_DECIDED = frozenset({"decided", "appeal_decided"})  # `reason` is the platform's

Event = CaseOpenedV1 | ReporterDetailsV1 | CaseTriagedV1 | EscalationOutcomeV1

_FRESH = """
WITH fresh AS (
    INSERT INTO notify.inbox (event_id) SELECT unnest($1::uuid[])
    ON CONFLICT DO NOTHING RETURNING event_id
)
SELECT array_agg(event_id) FROM fresh
"""
_OPENED = """
INSERT INTO notify.cases AS c (case_id, source, report_id, received_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (case_id) DO UPDATE SET source = COALESCE(c.source, EXCLUDED.source),
    report_id = COALESCE(c.report_id, EXCLUDED.report_id),
    received_at = COALESCE(c.received_at, EXCLUDED.received_at)
"""
_REPORTER = """
INSERT INTO notify.cases AS c (case_id, reporter_email, reporter_at) VALUES ($1, $2, $3)
ON CONFLICT (case_id) DO UPDATE SET reporter_email = EXCLUDED.reporter_email,
    reporter_at = EXCLUDED.reporter_at
WHERE c.erased_at IS NULL AND (c.reporter_at IS NULL OR EXCLUDED.reporter_at >= c.reporter_at)
"""
_ERASE = """
INSERT INTO notify.cases AS c (case_id, reporter_at, erased_at) VALUES ($1, $2, $2)
ON CONFLICT (case_id) DO UPDATE SET reporter_email = NULL,
    reporter_at = GREATEST(c.reporter_at, EXCLUDED.reporter_at),
    erased_at = COALESCE(c.erased_at, EXCLUDED.erased_at)
"""
# Every email to the erased reporter of a case: the address goes, and unsent ones stay unsent.
_ERASE_MAIL = """
UPDATE notify.mail SET recipient = NULL,
    gave_up_at = CASE WHEN sent_at IS NULL THEN COALESCE(gave_up_at, now()) ELSE gave_up_at END,
    last_error = CASE WHEN sent_at IS NULL THEN 'reporter erased' ELSE NULL END,
    leased_until = NULL
WHERE case_id = $1 AND kind = ANY($2::text[]) AND recipient IS NOT NULL
"""
_TRIAGED = """
INSERT INTO notify.cases AS c (case_id, triage_revision, url_ids) VALUES ($1, $2, $3)
ON CONFLICT (case_id) DO UPDATE SET triage_revision = EXCLUDED.triage_revision,
    url_ids = EXCLUDED.url_ids
WHERE c.triage_revision IS NULL OR EXCLUDED.triage_revision > c.triage_revision
"""
_OUTCOME = """
INSERT INTO notify.urls AS u (case_id, url_id, escalation_id, url, platform, state, decision,
    reason, occurred_at, route)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (case_id, url_id) DO UPDATE SET
    escalation_id = EXCLUDED.escalation_id, url = EXCLUDED.url, platform = EXCLUDED.platform,
    route = COALESCE(EXCLUDED.route, u.route),
    state = EXCLUDED.state,
    decision = COALESCE(EXCLUDED.decision,
                        CASE WHEN EXCLUDED.state IN ('breached', 'appealed') THEN u.decision END),
    reason = COALESCE(EXCLUDED.reason, CASE WHEN EXCLUDED.state IN ('breached', 'appealed')
                                            THEN u.reason END),
    occurred_at = EXCLUDED.occurred_at
WHERE EXCLUDED.occurred_at >= u.occurred_at
"""
_CASE = """
SELECT case_id, source, reporter_email, erased_at, url_ids, receipt_queued_at,
    outcome_queued_at
FROM notify.cases WHERE case_id = ANY($1::uuid[]) ORDER BY case_id FOR UPDATE
"""
_URLS = """
SELECT case_id, url_id, url, platform, state, decision, reason, route FROM notify.urls
WHERE case_id = ANY($1::uuid[])
"""
_RECEIPT_QUEUED = "UPDATE notify.cases SET receipt_queued_at = now() WHERE case_id = ANY($1)"
_OUTCOME_QUEUED = "UPDATE notify.cases SET outcome_queued_at = now() WHERE case_id = ANY($1)"
# When a status link issued now expires, in the receipt's words (now() is the
# transaction's: one answer for every receipt of a batch).
_EXPIRES = "SELECT to_char(now() + make_interval(days => $1), 'FMDD FMMonth YYYY')"


class Notify:
    """Applies consumed events and queues the emails they make due (see module doc)."""

    def __init__(
        self, db: Database, dead_letters: DeadLetters, settings: Settings, wake: Any = None
    ) -> None:
        self._db = db
        self._dead = dead_letters
        self._settings = settings
        self._wake = wake
        self._log = get_logger("helpline.notify")

    async def process(self, records: Sequence[Record]) -> None:
        """Applies every valid event and queues what is due in one transaction; marks the
        others dead with the reason (published by the runner after the commit)."""
        events, refused = admit(records)
        self._dead.admit(records, [r for r, _ in refused])
        async with self._db.pool.acquire() as conn, conn.transaction():
            applied = await apply(conn, events)
            queued = await queue_due(conn, {e.case_id for e in applied}, self._settings)
            queued += await alerts.on_events(conn, applied, self._settings)  # wakes senders
        for record, error in refused:
            self._log.warning(
                "event refused", topic=record.topic, offset=record.offset, error=error[:300]
            )
            self._dead.add(record, error)
        if queued and self._wake is not None:
            self._wake()
        if applied:
            self._log.debug("events applied", applied=len(applied), queued=queued)


def admit(records: Sequence[Record]) -> tuple[list[Event], list[tuple[Record, str]]]:
    """The valid events of `records`, and the records refused with why (never the values)."""
    events, refused = admit_by_topic(records, MODELS, "notify")
    return events, refused  # type: ignore[return-value]  # MODELS' models are the Event union


async def apply(conn: Conn, events: Sequence[Event]) -> list[Event]:
    """Apply the events not applied before, in `conn`'s transaction; returns those applied."""
    if not events:
        return []
    fresh = set(await conn.fetchval(_FRESH, [e.event_id for e in events]) or ())
    new: list[Event] = []
    for e in events:
        if e.event_id in fresh:
            fresh.discard(e.event_id)
            new.append(e)
    # By case (stable: a case's events keep their order), so concurrent batches lock the
    # cases' rows in one order and never deadlock on them.
    statements = [st for e in sorted(new, key=lambda e: e.case_id) for st in _statements(e)]
    # The same statements in the same order; a run of one statement goes in one round trip.
    for sql, run in groupby(statements, key=lambda st: st[0]):
        await conn.executemany(sql, [args for _, args in run])
    return new


def _statements(e: Event) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that apply `e`, in order."""
    if isinstance(e, CaseOpenedV1):
        return [(_OPENED, (e.case_id, e.source, e.report_id, e.received_at))]
    if isinstance(e, ReporterDetailsV1):
        if e.reporter is None:
            return [
                (_ERASE, (e.case_id, e.occurred_at)),
                (_ERASE_MAIL, (e.case_id, list(REPORTER_KINDS))),
            ]
        return [(_REPORTER, (e.case_id, str(e.reporter.email), e.occurred_at))]
    if isinstance(e, CaseTriagedV1):
        return [(_TRIAGED, (e.case_id, e.revision, [u.url_id for u in e.urls]))]
    url_id = e.url_id or e.escalation_id
    return [
        (
            _OUTCOME,
            (
                e.case_id,
                url_id,
                e.escalation_id,
                e.url,
                e.platform,
                e.state,
                e.decision,
                e.reason,
                e.occurred_at,
                e.route,
            ),
        )
    ]


async def queue_due(conn: Conn, case_ids: set[uuid.UUID], settings: Settings) -> int:
    """Queue the receipt and outcome emails now due for `case_ids` (each once per case);
    returns how many were queued. A handful of statements per batch, whatever its size:
    the cases' links, their markers and their emails each go in one."""
    if not case_ids:
        return 0
    opted_out = set(settings.receipt_opt_out_sources)
    cases = [
        case
        for case in await conn.fetch(_CASE, sorted(case_ids))
        if case["source"] is not None
        and case["reporter_email"] is not None
        and case["erased_at"] is None
        and case["source"] not in opted_out
        and not is_simulated_source(case["source"])
    ]
    # The URLs of every case whose outcome may be due, in one query (rows this transaction
    # wrote and holds the cases' locks on: what a query per case would read).
    awaiting = [c["case_id"] for c in cases if c["outcome_queued_at"] is None and c["url_ids"]]
    urls_of: dict[uuid.UUID, dict[uuid.UUID, Any]] = {}
    for u in await conn.fetch(_URLS, awaiting) if awaiting else ():
        urls_of.setdefault(u["case_id"], {})[u["url_id"]] = u
    receipts: list[uuid.UUID] = []
    outcomes: dict[uuid.UUID, list[Any]] = {}
    for case in cases:
        if case["receipt_queued_at"] is None:
            receipts.append(case["case_id"])
        if case["outcome_queued_at"] is None and case["url_ids"]:
            by_id = urls_of.get(case["case_id"], {})
            current = [by_id.get(i) for i in case["url_ids"]]
            if all(u is not None and u["state"] in FINAL_STATES for u in current):
                outcomes[case["case_id"]] = [u for u in current if u]
    # One new link per case that gets an email: its receipt and outcome queued together
    # carry the same one.
    linked = [
        c["case_id"] for c in cases if c["case_id"] in outcomes or c["receipt_queued_at"] is None
    ]
    tokens = await status_links.issue_many(conn, linked, settings)
    link_of = {c: status_links.status_url(settings, t) for c, t in zip(linked, tokens, strict=True)}
    expires = ""
    if receipts:  # now() is the transaction's: one answer for every receipt
        expires = str(await conn.fetchval(_EXPIRES, settings.status_link_ttl_days))
    mails: list[Outgoing] = []
    for case in cases:
        case_id: uuid.UUID = case["case_id"]
        email = case["reporter_email"]
        if case["receipt_queued_at"] is None:
            mails.append(_receipt(case_id, email, link_of[case_id], expires))
        if case_id in outcomes:
            mails.append(_outcome(case_id, email, outcomes[case_id], link_of[case_id]))
    if receipts:
        await conn.execute(_RECEIPT_QUEUED, receipts)
    if outcomes:
        await conn.execute(_OUTCOME_QUEUED, list(outcomes))
    return await queue_mails(conn, mails)


def _receipt(case_id: uuid.UUID, email: str, link: str, expires: str) -> Outgoing:
    reference = case_reference(case_id)
    mail = render(
        "receipt",
        f"Your report {reference}: we have received it",
        reference=reference,
        status_link=link,
        expires=expires,
    )
    return Outgoing(
        key=f"receipt:{case_id}",
        to=email,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        kind="receipt",
        case_id=case_id,
    )


def _outcome(case_id: uuid.UUID, email: str, urls: Sequence[Any], link: str) -> Outgoing:
    reference = case_reference(case_id)
    listed = [
        {
            # A link to child sexual imagery is never sent back: the hotline has it.
            "url": HOTLINE_LINK if u["route"] == "hotline" else u["url"],
            "platform": HOTLINE if u["route"] == "hotline" else platform_name(u["platform"]),
            "outcome": outcome_words(u["state"], u["decision"]),
            # The platform's own reason; for the other states it is ours (internal).
            "reason": u["reason"] if u["state"] in PLATFORM_DECIDED else None,
        }
        for u in urls
    ]
    mail = render(
        "outcome",
        f"Your report {reference}: the outcome",
        reference=reference,
        urls=listed,
        status_link=link,
    )
    return Outgoing(
        key=f"outcome:{case_id}",
        to=email,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        kind="outcome",
        case_id=case_id,
    )


# Keys that name a person's details, whatever their spelling (reporterEmail, tel_no, ...):
# the `reporter` member and what a producer might send beside it by mistake.
_PERSONAL_KEY_PARTS = ("reporter", "email", "mail", "phone", "mobile", "tel", "name", "address")
# Values that look like an email address or a phone number, wherever they are.
_EMAIL = re.compile(r"[^\s@/:\\\"'<>(),;]+@[^\s@/\\\"'<>(),;]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
# Ids and timestamps have phone-like digit runs but no personal data: kept as they are.
_ID_OR_TIME = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\d{4}-\d{2}-\d{2}([T ][0-9:.]+)?(Z|[+-]\d{2}:?\d{2})?"
)


def _personal(key: str) -> bool:
    folded = "".join(c for c in key.lower() if c.isalnum())
    return any(part in folded for part in _PERSONAL_KEY_PARTS)


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _personal(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        if _ID_OR_TIME.fullmatch(value):
            return value
        value = _EMAIL.sub(REDACTED, value)
        # A URL keeps its digits (video ids look like phone numbers); it is the content.
        return value if value.startswith(("http://", "https://")) else _PHONE.sub(REDACTED, value)
    return value


def redact(raw: bytes) -> bytes:
    """A dead letter's value without personal data: the JSON with the value of every member
    whose name suggests a person's details (`reporter`, `reporter_email`, `name`, `phone`,
    ..., at any depth) replaced by "[redacted]", and any email address or phone number in
    the other strings (a case's description) too; empty (withheld) when it does not parse as
    a JSON object, since then nothing tells the reporter's details apart from the rest."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError, UnicodeError):
        return b""
    if not isinstance(data, dict):
        return b""
    try:
        return json.dumps(_scrub(data), ensure_ascii=False, separators=(",", ":")).encode()
    except (RecursionError, UnicodeError, ValueError):
        return b""
