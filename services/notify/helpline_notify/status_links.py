"""Status links: a private, expiring link per case that opens the reporter's status page
without a key (issue 11 item 2).

A token is 256 random bits (43 URL-safe characters); only its SHA-256 is stored in
`notify.status_links`, so the token exists only in the email that carries it. A link is
live until its `expires_at` (now + `status_link_ttl_days` when issued) and until a
practitioner revokes it. `issue` makes a new link on every call (a stored hash cannot give
its token back): call it once per receipt, inside the transaction that queues the receipt,
so a redelivered event that queues nothing issues nothing either.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import timedelta

from helpline_shared.db import Conn
from helpline_shared.settings import Settings

TOKEN_BYTES = 32
# secrets.token_urlsafe(32): 43 characters of the URL-safe base64 alphabet, no padding.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


async def issue(conn: Conn, case_id: uuid.UUID, settings: Settings) -> str:
    """A new token for `case_id`, live for `settings.status_link_ttl_days` from now. Every
    call makes another link (earlier ones stay live); only the token's SHA-256 is stored,
    in `conn`'s transaction if one is open."""
    [token] = await issue_many(conn, [case_id], settings)
    return token


async def issue_many(conn: Conn, case_ids: Sequence[uuid.UUID], settings: Settings) -> list[str]:
    """:func:`issue` for each of `case_ids` in one statement: a new token each, in order."""
    tokens = [secrets.token_urlsafe(TOKEN_BYTES) for _ in case_ids]
    if tokens:
        await conn.execute(
            "INSERT INTO notify.status_links (token_sha256, case_id, expires_at)"
            " SELECT d, c, now() + $3::interval FROM unnest($1::bytea[], $2::uuid[]) AS t(d, c)",
            [_digest(t) for t in tokens],
            list(case_ids),
            timedelta(days=settings.status_link_ttl_days),
        )
    return tokens


def status_url(settings: Settings, token: str) -> str:
    """The page's public address: `settings.status_base_url` + "/status/" + token."""
    return settings.status_base_url.rstrip("/") + "/status/" + token


async def find(conn: Conn, token: str) -> uuid.UUID | None:
    """The case of a live link, or None alike for a malformed, unknown, expired or revoked
    token, and for a link whose case's reporter was erased (the link was theirs; erasure
    ends it): callers show one page for all of them, no oracle."""
    if not TOKEN_PATTERN.fullmatch(token):
        return None
    case_id: uuid.UUID | None = await conn.fetchval(
        "SELECT l.case_id FROM notify.status_links l"
        " WHERE l.token_sha256 = $1 AND l.revoked_at IS NULL AND l.expires_at > now()"
        " AND NOT EXISTS (SELECT 1 FROM notify.cases c"
        " WHERE c.case_id = l.case_id AND c.erased_at IS NOT NULL)",
        _digest(token),
    )
    return case_id


async def revoke(conn: Conn, case_id: uuid.UUID, by: str) -> int:
    """Revoke every link of `case_id` not yet revoked (expired ones too, so the record says
    who ended them), recording `by` (the practitioner's key id) and now; answers how many.
    Revoking again answers 0 and keeps the first record."""
    result: str = await conn.execute(
        "UPDATE notify.status_links SET revoked_at = now(), revoked_by = $2"
        " WHERE case_id = $1 AND revoked_at IS NULL",
        case_id,
        by,
    )
    return int(result.rsplit(" ", 1)[-1])
