"""API keys: created, listed, revoked and verified against `access.api_keys`.

A key reads `hk_<key_id>_<secret>`: the key id is 12 lowercase hex characters, public, and
names the key in lists and audit rows; the secret is `secrets.token_urlsafe(32)` (256 random
bits). Only a SHA-256 of a fresh 16-byte per-key salt followed by the secret is stored. A
slow password hash (scrypt) defends guessable secrets against offline guessing; a 256-bit
random secret cannot be guessed whatever the hash, so one fast hash suffices and keeps
verification, done on every request, cheap. The plaintext is returned once, by `create`.

Scopes: `submit` files reports, for the one `source` the key is bound to (required for a
submit key, refused for any other); `read` reads cases and totals; `practitioner` reads
reporters' contact details and records actions, and implies `read`; `admin` manages keys
and implies nothing else, so an operator's key cannot read casework by accident. A key may
hold several scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from helpline_shared.db import Conn

SCOPES: tuple[str, ...] = ("submit", "read", "practitioner", "admin")
PREFIX = "hk_"
_KEY = re.compile(r"hk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# What each held scope grants besides itself.
_IMPLIES: dict[str, frozenset[str]] = {"practitioner": frozenset({"read"})}


class KeyRequestError(ValueError):
    """A create request no key can satisfy: an unknown scope, none, or a misplaced source."""


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as the APIs see it: never its secret or hash."""

    key_id: str
    name: str
    scopes: frozenset[str]
    source: str | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None

    def allows(self, scope: str) -> bool:
        """Whether this key grants `scope`: held directly, or `read` via `practitioner`."""
        return any(scope == held or scope in _IMPLIES.get(held, ()) for held in self.scopes)


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


def check_request(scopes: Iterable[str], source: str | None) -> tuple[list[str], str | None]:
    """The scopes (deduplicated, in canonical order) and source of a valid create request;
    raises KeyRequestError saying what is wrong otherwise."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise KeyRequestError(
            f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}"
        )
    if not wanted:
        raise KeyRequestError(f"give at least one scope: {', '.join(SCOPES)}")
    source = source.strip() if source is not None else None
    if "submit" in wanted and not source:
        raise KeyRequestError("a submit key needs --source: the source it may submit for")
    if "submit" not in wanted and source is not None:
        raise KeyRequestError("--source binds a submit key; this key has no submit scope")
    return [s for s in SCOPES if s in wanted], source


async def create(
    conn: Conn, scopes: Iterable[str], source: str | None, name: str, by: str
) -> tuple[str, str]:
    """Store a new key; returns (key id, the plaintext key), the only time it is shown."""
    ordered, source = check_request(scopes, source)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    await conn.execute(
        """INSERT INTO access.api_keys
               (key_id, secret_salt, secret_hash, name, scopes, source, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        key_id,
        salt,
        _digest(salt, secret),
        name,
        ordered,
        source,
        by,
    )
    return key_id, f"{PREFIX}{key_id}_{secret}"


_COLUMNS = """key_id, name, scopes, source, created_at, created_by, revoked_at,
              last_used_at"""


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        name=row["name"],
        scopes=frozenset(row["scopes"]),
        source=row["source"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


async def list_keys(conn: Conn) -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM access.api_keys ORDER BY created_at, key_id")
    return [_info(r) for r in rows]


async def revoke(conn: Conn, key_id: str) -> bool:
    """Revoke a key from now on; False when no key has this id. Revoking again keeps the
    first revocation's time."""
    row = await conn.fetchrow(
        """UPDATE access.api_keys SET revoked_at = coalesce(revoked_at, now())
           WHERE key_id = $1 RETURNING key_id""",
        key_id,
    )
    return row is not None


_DUMMY_SALT = bytes(16)


LAST_USED_EVERY_S = 60.0  # a key's last use is written at most this often


async def verify(conn: Conn, presented: str) -> KeyInfo | None:
    """The live key `presented` is, or None for a malformed, unknown, wrong or revoked key;
    read from the table on each call, so a revocation is seen at once. The secret's hash is
    compared in constant time, and an unknown key id still costs one hash. Its last use is
    recorded when the one stored is older than `LAST_USED_EVERY_S` (one write a minute per
    busy key, not one per request)."""
    match = _KEY.fullmatch(presented.strip())
    if match is None:
        return None
    key_id, secret = match.groups()
    row = await conn.fetchrow(
        f"""SELECT secret_salt, secret_hash, {_COLUMNS},
                   last_used_at IS NULL
                   OR last_used_at < now() - make_interval(secs => $2) AS stale
            FROM access.api_keys WHERE key_id = $1""",
        key_id,
        LAST_USED_EVERY_S,
    )
    if row is None:
        hmac.compare_digest(_digest(_DUMMY_SALT, secret), bytes(32))
        return None
    if not hmac.compare_digest(_digest(bytes(row["secret_salt"]), secret), row["secret_hash"]):
        return None
    if row["revoked_at"] is not None:
        return None
    if not row["stale"]:
        return _info(row)
    used = await conn.fetchrow(
        f"""UPDATE access.api_keys SET last_used_at = now()
            WHERE key_id = $1 AND revoked_at IS NULL RETURNING {_COLUMNS}""",
        key_id,
    )
    return None if used is None else _info(used)
