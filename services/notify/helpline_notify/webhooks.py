"""The alert webhook: signed POSTs of alerts from the `notify.webhook_alerts` outbox.

Delivery promise: every alert row is POSTed to `alert_webhook_url` until the receiver
answers 2xx (delivered), answers a 3xx or a 4xx other than 408/429 (given up at once, the
status and reason kept on the row), or `delivery_max_attempts` tries have failed (given up). Between
tries the wait doubles from `delivery_retry_base_s` up to `delivery_retry_max_s`, or is the
receiver's `Retry-After` (in seconds) when that is longer, within the same cap. A row is
leased while it is being sent, so several notify instances never send one alert at the same
time; a crash after the receiver got the POST but before the row was marked sends it again
after the lease: delivery is at least once, and a receiver drops a repeat by its
`X-Helpline-Event-Id` (the same for every try of one alert; `id` in the body).

Each try is signed afresh: `X-Helpline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" keyed with alert_webhook_secret>`. Receivers check it with `verify_signature`,
which also refuses a timestamp older than its tolerance (a replayed capture). A receiver:

    body = await request.body()  # the raw bytes, before any JSON parsing
    if not verify_signature(secret, request.headers["X-Helpline-Signature"], body):
        return Response(status_code=401)
    if seen(request.headers["X-Helpline-Event-Id"]):  # a repeat of a delivered alert
        return Response(status_code=200)

Rows wait while `alert_webhook_url` or `alert_webhook_secret` is unset, and are sent once
both are configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import asyncpg

from helpline_notify.mail import backoff_s  # the same schedule as an email's
from helpline_shared.db import Conn, Database
from helpline_shared.logging import get_logger
from helpline_shared.loop import WorkLoop
from helpline_shared.settings import Settings

SIGNATURE_HEADER = "X-Helpline-Signature"
EVENT_ID_HEADER = "X-Helpline-Event-Id"
RETRYABLE_4XX = frozenset({408, 429})
# How long a claimed row stays with its sender before another may take it (a crash mid-send).
LEASE_S = 60.0
BATCH = 20
TIMEOUT_S = 10.0  # one POST, connection to answer


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Helpline-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: float = 300) -> bool:
    """Whether `header` (an `X-Helpline-Signature` value) signs `body` with `secret`, made
    within `tolerance_s` of now. Compare in constant time; give the raw request body, not a
    re-serialised one. Several `v1=` values (a rotated secret) are accepted if any matches."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates or abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, c) for c in candidates)


async def queue_webhook(
    conn: Conn, *, alert_id: uuid.UUID, type_: str, case_id: uuid.UUID, body: str
) -> bool:
    """Add one alert to the webhook outbox in the caller's transaction; False if that alert
    was already queued (a redelivered event): each alert is queued once."""
    added = await conn.fetchval(
        """INSERT INTO notify.webhook_alerts (alert_id, type, case_id, body)
           VALUES ($1, $2, $3, $4) ON CONFLICT (alert_id) DO NOTHING RETURNING true""",
        alert_id,
        type_,
        case_id,
        body,
    )
    return bool(added)


@dataclass(frozen=True)
class Outcome:
    """What one try came to: delivered, retry later, or given up."""

    delivered: bool
    retry: bool
    status: int | None
    error: str | None


def judge(status: int | None, error: str | None) -> Outcome:
    """2xx delivered; 408, 429, 5xx or no answer retried; any other answer given up (a
    redirect too: a signed alert is never followed to another address)."""
    if status is not None and 200 <= status < 300:
        return Outcome(True, False, status, None)
    if status is None or status >= 500 or status in RETRYABLE_4XX:
        return Outcome(False, True, status, error)
    return Outcome(False, False, status, error)


class WebhookSender:
    """Delivers the webhook outbox (see the module docstring) in a background WorkLoop."""

    def __init__(self, db: Database, settings: Settings, *, idle_s: float = 1.0) -> None:
        self._db = db
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._log = get_logger("helpline.notify.webhooks")
        self._loop = WorkLoop("alert-webhooks", self._step, idle_s=idle_s, probes=(db.ready,))

    def wake(self) -> None:
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        await self._loop.stop(timeout_s)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _step(self) -> bool:
        return await self.send_due() >= BATCH

    async def send_due(self) -> int:
        """Tries every alert that is due once; returns how many were tried."""
        url, secret = self._settings.alert_webhook_url, self._settings.alert_webhook_secret
        if not url or secret is None:
            return 0
        rows = await self._db.pool.fetch(
            """UPDATE notify.webhook_alerts SET next_attempt_at = now() + $1::interval
               WHERE alert_id IN (
                   SELECT alert_id FROM notify.webhook_alerts
                   WHERE status = 'pending' AND next_attempt_at <= now()
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING alert_id, case_id, type, body, attempts""",
            timedelta(seconds=LEASE_S),
            BATCH,
        )
        await asyncio.gather(*(self._try(url, secret.get_secret_value(), r) for r in rows))
        return len(rows)

    async def _try(self, url: str, secret: str, row: asyncpg.Record) -> None:
        alert_id: uuid.UUID = row["alert_id"]
        body: bytes = row["body"].encode()
        attempts: int = row["attempts"] + 1
        status, error, retry_after = await self._post(url, secret, alert_id, body)
        outcome = judge(status, error)
        log = self._log.bind(
            alert_id=str(alert_id),
            case_id=str(row["case_id"]),
            alert_type=row["type"],
            attempts=attempts,
            status=status,
        )
        if outcome.delivered:
            await self._finish(alert_id, attempts, "delivered", status, None)
            log.info("alert webhook delivered")
        elif outcome.retry and attempts < self._settings.delivery_max_attempts:
            wait = min(
                self._settings.delivery_retry_max_s,
                max(backoff_s(attempts, self._settings), retry_after or 0.0),
            )
            await self._db.pool.execute(
                """UPDATE notify.webhook_alerts SET attempts = $2, last_status = $3,
                       last_error = $4, next_attempt_at = now() + $5::interval
                   WHERE alert_id = $1""",
                alert_id,
                attempts,
                status,
                error,
                timedelta(seconds=wait),
            )
            log.warning("alert webhook failed; will retry", error=error, retry_in_s=wait)
        else:
            reason = error if not outcome.retry else f"{error} (after {attempts} tries)"
            await self._finish(alert_id, attempts, "given_up", status, reason)
            log.error("alert webhook given up", error=reason)

    async def _finish(
        self, alert_id: uuid.UUID, attempts: int, status: str, code: int | None, error: str | None
    ) -> None:
        await self._db.pool.execute(
            """UPDATE notify.webhook_alerts SET status = $2, attempts = $3, last_status = $4,
                   last_error = $5, finished_at = now() WHERE alert_id = $1""",
            alert_id,
            status,
            attempts,
            code,
            error,
        )

    async def _post(
        self, url: str, secret: str, alert_id: uuid.UUID, body: bytes
    ) -> tuple[int | None, str | None, float | None]:
        """The answer's status, the error (None on 2xx) and its Retry-After seconds."""
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
            EVENT_ID_HEADER: str(alert_id),
        }
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                text = (await resp.text(errors="replace"))[:200]
                retry_after = resp.headers.get("Retry-After", "")
                error = None if resp.status < 300 else f"HTTP {resp.status}: {text}"
                return resp.status, error, float(retry_after) if retry_after.isdigit() else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300], None
