"""What the HTTP API and the web form share: a capped body, and handing a report over.

A valid report is published onto `helpline.reports.submitted` (acknowledged by the broker)
for the intake consumer to store, so every path shares one deduplication. A refusal,
whatever its cause (invalid, too large, wrong content type), is stored in
`intake.rejections` with its reasons and the refused bytes, then published onto
`helpline.reports.rejected`, so the database, the topic and the totals agree. If the
broker cannot take it, the request fails (5xx) and the stored row says it was refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from helpline_intake import repository
from helpline_intake.usecase import case_id_for, rejected_message, rejection
from helpline_intake.validation import MAX_MESSAGE_BYTES, conflict, content_hash
from helpline_shared.db import Database
from helpline_shared.events import Channel, RejectionReason, ReportRejectedV1, ReportSubmittedV1
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.topics import REPORTS_SUBMITTED


def method_not_allowed(allowed: str) -> Response:
    """405 for a method the route does not serve: nothing is read, published or counted."""
    return PlainTextResponse(
        f"method not allowed; use {allowed}", status_code=405, headers={"Allow": allowed}
    )


async def read_capped(request: Request) -> bytes | None:
    """The request body, or None as soon as it passes the size limit."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MESSAGE_BYTES:
            return None
    return bytes(body)


@dataclass(frozen=True)
class Refused:
    """A refusal already stored and published, with the HTTP status that answers it."""

    event: ReportRejectedV1
    status: int


class Handover:
    """Hands a submission over to intake: publishes a valid report, records a refusal."""

    def __init__(self, broker: KafkaBroker, db: Database) -> None:
        self._broker = broker
        self._db = db

    async def submit(
        self, raw: bytes, result: ReportSubmittedV1 | list[RejectionReason], via: Channel
    ) -> Refused | None:
        """Publish the report for intake, or refuse it; returns the refusal if refused."""
        if isinstance(result, ReportSubmittedV1):
            if await self._conflicts(result):
                return await self.refuse(raw, conflict(), via, 409)
            message = OutgoingMessage(REPORTS_SUBMITTED.name, raw, result.report_id.encode())
            try:
                await publish_all(self._broker, [message])
            except BaseException:
                await self._forget(result)  # not accepted: a retry may bring other content
                raise
            return None
        too_large = any(r.type == "too_large" for r in result)
        return await self.refuse(raw, result, via, 413 if too_large else 422)

    async def _conflicts(self, report: ReportSubmittedV1) -> bool:
        """Whether other content is stored, or was accepted, under this report's id.

        The first content accepted for an id claims it (`intake.accepted_hashes`; concurrent
        claims are serialised by the primary key), so of two different reports sent at once
        or one after the other, the later gets 409.
        """
        case_id, digest = case_id_for(report), content_hash(report)
        async with self._db.pool.acquire() as conn:
            stored = await repository.stored_hashes(conn, [case_id])
            if stored.get(case_id) not in (None, digest):
                return True
            await conn.execute(
                "INSERT INTO intake.accepted_hashes (case_id, content_hash) VALUES ($1, $2)"
                " ON CONFLICT (case_id) DO NOTHING",
                case_id,
                digest,
            )
            accepted = await conn.fetchval(
                "SELECT content_hash FROM intake.accepted_hashes WHERE case_id = $1", case_id
            )
        return bool(accepted != digest and case_id not in stored)

    async def _forget(self, report: ReportSubmittedV1) -> None:
        async with self._db.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM intake.accepted_hashes WHERE case_id = $1 AND content_hash = $2",
                case_id_for(report),
                content_hash(report),
            )

    async def refuse(
        self, raw: bytes | None, reasons: list[RejectionReason], via: Channel, status: int
    ) -> Refused:
        """Store the refusal (with the bytes, kept only here), then publish it."""
        event = rejection(raw or b"", reasons, via=via)
        async with self._db.pool.acquire() as conn:
            await repository.insert_rejections(conn, [(event, raw)])
        await publish_all(self._broker, [rejected_message(event, None)])
        return Refused(event, status)
