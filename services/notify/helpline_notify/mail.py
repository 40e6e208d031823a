"""The mail outbox: every email notify (and its status, alert and notice parts) sends.

Queueing: :func:`queue_mail` inserts the email in the caller's transaction, so an email
exists exactly when the change that called for it committed. Its `key` makes it idempotent:
the same key queued twice is one email.

Sending (:class:`Sender`, a :class:`~helpline_shared.loop.WorkLoop`): due emails are claimed
with `FOR UPDATE SKIP LOCKED` and a lease (so replicas never send the same row at once),
sent over SMTP with aiosmtplib (a claimed batch over one connection,
:class:`~helpline_notify.smtp.SmtpSession`), then each email's `sent_at` is recorded. The
guarantee is *at least once sent, recorded once*: a process killed after the SMTP server
accepted an email but before `sent_at` was written leaves the lease to expire, and the
email is sent again with the *same* Message-ID (derived from the key), so the receiving
side can recognise the duplicate. A failed send is retried with exponential backoff
(`delivery_retry_base_s` .. `delivery_retry_max_s`) up to `delivery_max_attempts` tries,
or at once given up on a permanent refusal (SMTP 5xx); a given-up email keeps the reason in
`last_error`. A per-recipient rate limit (`mail_per_recipient_limit`, e.g. "20/hour",
counted from the emails sent to that address, in any letter case: `A@X.org` and `a@x.org`
are one recipient, so the public form cannot mail-bomb an address past the limit by
respelling it) postpones an email, never drops it; with several sender processes the count
can be passed by the emails in flight at that moment. Alerts (kind `alert`, to the
`alert_emails` on duty) are exempt and never wait: a night of critical cases pages them at
once, not after the window.

No personal data is logged: only the key, the kind and the case id. An email whose
recipient was erased (NULL) is never sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

import aiosmtplib
from limits import parse

from helpline_notify.smtp import SmtpSession
from helpline_shared.db import Conn, Database
from helpline_shared.logging import get_logger
from helpline_shared.loop import WorkLoop
from helpline_shared.settings import Settings

CLAIM_BATCH = 10
ALERT_KIND = "alert"  # exempt from the per-recipient limit (see the module doc)

_QUEUE = """
INSERT INTO notify.mail (key, kind, case_id, recipient, subject, body_text, body_html)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (key) DO NOTHING
RETURNING seq
"""
_CLAIM = """
WITH due AS (
    SELECT key FROM notify.mail
    WHERE sent_at IS NULL AND gave_up_at IS NULL AND recipient IS NOT NULL
      AND due_at <= now() AND (leased_until IS NULL OR leased_until < now())
    ORDER BY due_at, seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE notify.mail m SET leased_until = now() + make_interval(secs => $2),
    attempts = m.attempts + 1
FROM due WHERE m.key = due.key
RETURNING m.key, m.kind, m.case_id, m.recipient, m.subject, m.body_text, m.body_html,
    m.attempts, m.seq
"""
# Sent to this recipient (any letter case) within the window, or queued earlier and in
# flight under a live lease (another sender's), and the earliest of those: when the window
# lets one more through.
_RECENT = """
SELECT count(*) AS n, min(COALESCE(sent_at, now())) AS oldest FROM notify.mail
WHERE lower(recipient) = lower($1) AND key <> $2
  AND (sent_at > now() - make_interval(secs => $3)
       OR (sent_at IS NULL AND leased_until > now() AND gave_up_at IS NULL AND seq < $4))
"""
_RECIPIENT = "SELECT recipient FROM notify.mail WHERE key = $1 AND sent_at IS NULL"
# Both checks before sending an email under the limit, in one round trip: its recipient now
# (NULL once erased) and the recipient's recent emails.
_CHECK = f"""
SELECT (SELECT recipient FROM notify.mail WHERE key = $2 AND sent_at IS NULL) AS recipient,
    recent.n, recent.oldest
FROM ({_RECENT}) AS recent
"""
_POSTPONE = """
UPDATE notify.mail SET due_at = $2, leased_until = NULL, attempts = attempts - 1
WHERE key = $1 AND sent_at IS NULL
"""
_SENT = """
UPDATE notify.mail SET sent_at = now(), leased_until = NULL, last_error = NULL
WHERE key = $1 AND sent_at IS NULL
"""
_RETRY = """
UPDATE notify.mail SET due_at = now() + make_interval(secs => $2), leased_until = NULL,
    last_error = $3
WHERE key = $1 AND sent_at IS NULL
"""
_GIVE_UP = """
UPDATE notify.mail SET gave_up_at = now(), leased_until = NULL, last_error = $2
WHERE key = $1 AND sent_at IS NULL
"""


# Due now, or failing (waiting out a backoff): not one only held by the recipient's limit.
_OLDEST_DUE = """
SELECT extract(epoch FROM clock_timestamp() - min(queued_at))::float8 FROM notify.mail
WHERE sent_at IS NULL AND gave_up_at IS NULL AND recipient IS NOT NULL
  AND (due_at <= now() OR last_error IS NOT NULL)
"""


async def oldest_due_seconds(db: Database) -> float:
    """How long since the oldest email that is due or failing was queued (one held only by
    its recipient's limit does not count); 0 when none; NaN when the database cannot be
    asked within 2 s. Exported as notify's `helpline_outbox_oldest_pending_seconds`, so the
    outbox alert also fires when mail stops going out."""
    try:
        age = await asyncio.wait_for(db.pool.fetchval(_OLDEST_DUE, timeout=2.0), 2.0)
    except Exception:
        return math.nan
    return max(0.0, float(age)) if age is not None else 0.0


def message_id(key: str, mail_from: str) -> str:
    """The Message-ID of the email queued under `key`: the same on every (re)send."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "helpline.invalid"
    return f"<{digest}@{domain}>"


async def queue_mail(
    conn: Conn,
    *,
    key: str,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    kind: str,
    case_id: uuid.UUID | None,
) -> bool:
    """Queue one email in `conn`'s transaction; sent once it commits. Idempotent by `key`:
    True when queued now, False when that key was queued before (nothing changes)."""
    seq = await conn.fetchval(_QUEUE, key, kind, case_id, to, subject, text, html)
    return seq is not None


@dataclass(frozen=True)
class Outgoing:
    """An email to queue (the arguments of :func:`queue_mail`)."""

    key: str
    to: str
    subject: str
    text: str
    html: str | None
    kind: str
    case_id: uuid.UUID | None


_QUEUE_MANY = """
INSERT INTO notify.mail (key, kind, case_id, recipient, subject, body_text, body_html)
SELECT key, kind, case_id, recipient, subject, body_text, body_html
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[],
            $7::text[]) WITH ORDINALITY
    AS m(key, kind, case_id, recipient, subject, body_text, body_html, ord)
ORDER BY ord
ON CONFLICT (key) DO NOTHING
RETURNING seq
"""


async def queue_mails(conn: Conn, mails: Sequence[Outgoing]) -> int:
    """:func:`queue_mail` for each of `mails` in one statement, in their order (so they are
    sent in it); returns how many were new."""
    if not mails:
        return 0
    rows = await conn.fetch(
        _QUEUE_MANY,
        [m.key for m in mails],
        [m.kind for m in mails],
        [m.case_id for m in mails],
        [m.to for m in mails],
        [m.subject for m in mails],
        [m.text for m in mails],
        [m.html for m in mails],
    )
    return len(rows)


def backoff_s(attempts: int, settings: Settings) -> float:
    """The pause before try `attempts + 1`: base x 2^(attempts-1), capped."""
    return float(
        min(settings.delivery_retry_max_s, settings.delivery_retry_base_s * 2 ** (attempts - 1))
    )


class Sender:
    """Sends due emails from the outbox (see the module doc for the guarantee)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        limit = parse(settings.mail_per_recipient_limit)
        self._limit_n = limit.amount
        self._window_s = float(limit.get_expiry())
        # A step's emails share a connection that is opened at most twice (SmtpSession):
        # long enough for two timed-out exchanges, and then some.
        self.lease_s = settings.smtp_timeout_s * 2 + 5
        self._log = get_logger("helpline.notify.mail")
        self.loop = WorkLoop(
            "notify-mail", self.step, idle_s=1.0, probes=[db.ready], max_backoff_s=30.0
        )

    def start(self) -> None:
        self.loop.start()

    def wake(self) -> None:
        self.loop.wake()

    async def stop(self, timeout_s: float) -> None:
        await self.loop.stop(timeout_s)

    async def step(self) -> bool:
        """Claim and send up to CLAIM_BATCH due emails; True when there may be more."""
        pool = self._db.pool
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, CLAIM_BATCH, self.lease_s)
        if rows:
            async with SmtpSession(self._settings) as smtp:
                for row in sorted(rows, key=lambda r: r["seq"]):
                    await self._deliver(dict(row), smtp)
        return len(rows) == CLAIM_BATCH

    async def _deliver(self, row: dict[str, Any], smtp: SmtpSession) -> None:
        pool = self._db.pool
        key = row["key"]
        recent = (
            None  # an alert to the people on duty never waits for the limit
            if row["kind"] == ALERT_KIND
            else await pool.fetchrow(_CHECK, row["recipient"], key, self._window_s, row["seq"])
        )
        now_to = await pool.fetchval(_RECIPIENT, key) if recent is None else recent["recipient"]
        # Erased since the claim (its reporter's erasure cleared the address): not sent.
        if now_to != row["recipient"]:
            self._log.info("email no longer to be sent", key=key, kind=row["kind"])
            return
        if recent is not None and recent["n"] >= self._limit_n:
            due = recent["oldest"] + timedelta(seconds=self._window_s)
            await pool.execute(_POSTPONE, key, due)
            self._log.info("email waits for the recipient's rate limit", key=key, due_at=due)
            return
        try:
            await smtp.send(self._message(row))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            reason = "; ".join(f"SMTP {r.code}: {r.message}" for r in exc.recipients)[:500]
            await self._failed(row, reason, permanent=all(500 <= c < 600 for c in codes))
            return
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.code}: {exc.message}"[:500]
            await self._failed(row, reason, permanent=500 <= exc.code < 600)
            return
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._failed(row, f"{type(exc).__name__}: {exc}"[:500], permanent=False)
            return
        await pool.execute(_SENT, key)
        self._log.info("email sent", key=key, kind=row["kind"], case_id=row["case_id"])

    async def _failed(self, row: dict[str, Any], reason: str, *, permanent: bool) -> None:
        key = row["key"]
        attempts = int(row["attempts"])
        # An SMTP refusal often quotes the address: kept out of the stored reason and the logs.
        reason = reason.replace(row["recipient"], "<recipient>")
        if permanent or attempts >= self._settings.delivery_max_attempts:
            await self._db.pool.execute(_GIVE_UP, key, reason)
            self._log.warning(
                "email given up", key=key, kind=row["kind"], attempts=attempts, permanent=permanent
            )
            return
        pause = backoff_s(attempts, self._settings)
        await self._db.pool.execute(_RETRY, key, pause, reason)
        self._log.info("email send failed; will retry", key=key, attempts=attempts, pause_s=pause)

    def _message(self, row: dict[str, Any]) -> EmailMessage:
        s = self._settings
        message = EmailMessage()
        message["From"] = s.mail_from
        message["To"] = row["recipient"]
        message["Subject"] = row["subject"]
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = message_id(row["key"], s.mail_from)
        message.set_content(row["body_text"])
        if row["body_html"]:
            message.add_alternative(row["body_html"], subtype="html")
        return message
