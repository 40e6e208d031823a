"""Erasing a reporter's personal data from intake's tables, keeping the anonymised case.

A reporter is found by a case id (that case only) or by an email address (every case filed
with it, compared without regard to case). Erasing replaces `reporter_name` with
`[erased]`, `reporter_email` with `erased+<first 8 hex digits of the case id>@invalid` and
`reporter_role` with NULL, stamps `reporter_erased_at`, and clears the stored bytes of every
refused message (`intake.rejections.original`) that holds the reporter's email, raw or
form-encoded. The case row, its duplicates count, its content hash, the rejections and their
reasons all stay, so every count stays. `organisation` is a school or service, not a
person, and stays. One `intake.erasures` row is written in the same transaction; it keeps
the email only as a salted SHA-256. Erasing again finds nothing and changes nothing.

Every other holder is told in the same transaction: for each erased case a
`ReporterDetailsV1` with a null reporter is queued on intake's outbox (keyed by case id, so
it is relayed after that case's reporter; a reporter still queued is deleted unsent), and
casework, the one consumer of `helpline.cases.reporters`, drops its copy when it reads it.
Triage, the escalator and metrics receive `helpline.cases.opened`, which carries no personal
data. The original reports on `helpline.reports.submitted` and the reporters on
`helpline.cases.reporters` cannot be erased from Kafka; those topics' retention (14 days)
bounds them. Copies on the rejected and dead-letter topics are redacted when published.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote_plus

from helpline_intake.usecase import reporter_message
from helpline_shared.db import Conn
from helpline_shared.events import case_reference, utcnow
from helpline_shared.outbox import Outbox
from helpline_shared.topics import CASE_REPORTERS

NAME_MARKER = "[erased]"
MatchedBy = Literal["case_id", "email"]


class UnknownCaseError(LookupError):
    """No case has the id an erasure by case id named."""


@dataclass(frozen=True)
class Target:
    """Whom to erase: a case id or an email address."""

    matched_by: MatchedBy
    case_id: uuid.UUID | None = None
    email: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """A case id (a UUID) or an email (anything with an `@`); ValueError otherwise."""
        text = text.strip()
        try:
            return cls("case_id", case_id=uuid.UUID(text))
        except ValueError:
            pass
        if "@" in text and len(text) >= 3:
            return cls("email", email=text)
        raise ValueError("give a case id (a UUID) or an email address")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_prefix(text: str) -> str | None:
    """For a case's short reference (`HL-7K3M-Q2XD`, any letter case, with or without the
    `HL-` and dashes), the first ten hex digits of its case id as `uuid` text
    (`xxxxxxxx-xx`); None if `text` is no reference."""
    chars = "".join(c for c in text.upper() if c.isalnum()).removeprefix("HL")
    chars = "".join({"O": "0", "I": "1", "L": "1"}.get(c, c) for c in chars)
    if len(chars) != 8 or any(c not in _CROCKFORD for c in chars):
        return None
    n = 0
    for c in chars:
        n = n * 32 + _CROCKFORD.index(c)
    hex10 = f"{n:010x}"
    return f"{hex10[:8]}-{hex10[8:]}"


async def case_by_reference(conn: Conn, text: str) -> uuid.UUID | None:
    """The id of the case intake holds whose short reference is `text`; None if none."""
    prefix = reference_prefix(text)
    if prefix is None:
        return None
    rows = await conn.fetch(
        "SELECT case_id FROM intake.reports WHERE case_id::text LIKE $1", prefix + "%"
    )
    wanted = case_reference(uuid.UUID(f"{prefix.replace('-', '')}{'0' * 22}"))
    for r in rows:
        if case_reference(r["case_id"]) == wanted:
            return r["case_id"]  # type: ignore[no-any-return]
    return None


@dataclass
class Found:
    """What an erasure would change (or changed): never the personal data itself."""

    case_ids: list[uuid.UUID] = field(default_factory=list)
    already_erased: int = 0
    rejections: int = 0

    @property
    def nothing(self) -> bool:
        return not self.case_ids and not self.rejections


@dataclass
class Erased(Found):
    erasure_id: uuid.UUID | None = None


def email_digest(email: str, salt: bytes) -> bytes:
    """SHA-256 of the salt and the lower-cased, trimmed email."""
    return hashlib.sha256(salt + email.strip().lower().encode()).digest()


def _patterns(emails: set[str]) -> list[str]:
    """How an email may appear in refused bytes: as typed (JSON) or form-encoded."""
    out: set[str] = set()
    for email in emails:
        e = email.strip().lower()
        out.update({e, quote_plus(e).lower()})
    return sorted(out)


_REJECTIONS = """original IS NOT NULL
    AND EXISTS (SELECT 1 FROM unnest($1::text[]) AS p
                WHERE position(p in lower(encode(original, 'escape'))) > 0)"""


async def _find(conn: Conn, target: Target, *, lock: bool) -> tuple[Found, set[str]]:
    suffix = " FOR UPDATE" if lock else ""
    if target.matched_by == "case_id":
        rows = await conn.fetch(
            "SELECT case_id, reporter_email, reporter_erased_at FROM intake.reports"
            " WHERE case_id = $1" + suffix,
            target.case_id,
        )
        if not rows:
            raise UnknownCaseError(str(target.case_id))
    else:
        rows = await conn.fetch(
            "SELECT case_id, reporter_email, reporter_erased_at FROM intake.reports"
            " WHERE lower(reporter_email) = lower($1) ORDER BY received_at, case_id" + suffix,
            (target.email or "").strip(),
        )
    live = [r for r in rows if r["reporter_erased_at"] is None]
    emails = {r["reporter_email"] for r in live}
    if target.email:
        emails.add(target.email)
    patterns = _patterns(emails)
    rejections = 0
    if patterns:
        rejections = await conn.fetchval(
            f"SELECT count(*) FROM intake.rejections WHERE {_REJECTIONS}", patterns
        )
    found = Found([r["case_id"] for r in live], len(rows) - len(live), rejections)
    return found, set(patterns)


async def find(conn: Conn, target: Target) -> Found:
    """What erasing `target` would change; raises UnknownCaseError for an unknown case id."""
    found, _ = await _find(conn, target, lock=False)
    return found


async def erase(
    conn: Conn, target: Target, *, by: str, reason: str | None, outbox: Outbox
) -> Erased:
    """Erase `target`'s personal data, audit it and queue a null reporter on `outbox` for
    each erased case, in one transaction. Raises UnknownCaseError for an unknown case id;
    when nothing is left to erase, changes nothing, writes no audit row (`erasure_id` is
    None) and queues nothing."""
    async with conn.transaction():
        found, patterns = await _find(conn, target, lock=True)
        done = Erased(found.case_ids, found.already_erased, found.rejections)
        if found.nothing:
            return done
        await conn.execute(
            """UPDATE intake.reports
               SET reporter_name = $2,
                   reporter_email = 'erased+' || left(replace(case_id::text, '-', ''), 8)
                                    || '@invalid',
                   reporter_role = NULL,
                   reporter_erased_at = now()
               WHERE case_id = ANY($1::uuid[])""",
            found.case_ids,
            NAME_MARKER,
        )
        status = await conn.execute(
            f"UPDATE intake.rejections SET original = NULL WHERE {_REJECTIONS}", sorted(patterns)
        )
        done.rejections = int(status.split()[-1])
        salt = digest = None
        if target.email:
            salt = secrets.token_bytes(16)
            digest = email_digest(target.email, salt)
        done.erasure_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO intake.erasures (erasure_id, matched_by, email_salt, email_hash,
                 case_ids, reports_erased, rejections_cleared, erased_by, reason)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            done.erasure_id,
            target.matched_by,
            salt,
            digest,
            found.case_ids,
            len(found.case_ids),
            done.rejections,
            by,
            reason,
        )
        # A reporter still queued (not yet relayed) is dropped rather than published.
        await conn.execute(
            """DELETE FROM outbox WHERE service = 'intake' AND topic = $1
                 AND key = ANY($2::bytea[])""",
            CASE_REPORTERS.name,
            [str(c).encode() for c in found.case_ids],
        )
        now = utcnow()
        await outbox.add(conn, [reporter_message(c, None, now) for c in found.case_ids])
        return done


async def was_erased(conn: Conn, email: str) -> bool:
    """Whether an erasure by email matched `email` (checked against every salted hash)."""
    rows = await conn.fetch(
        "SELECT email_salt, email_hash FROM intake.erasures WHERE matched_by = 'email'"
    )
    return any(email_digest(email, bytes(r["email_salt"])) == bytes(r["email_hash"]) for r in rows)
