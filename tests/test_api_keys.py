"""API keys: a created key verifies, is stored only as a salted hash, stops at revocation,
fails when tampered with or malformed, and grants its scopes by the documented rules; the
`helpline keys` command prints the key alone on its last line, lists without secrets and
refuses bad requests. On real PostgreSQL; the command runs as operators run it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from helpline_shared import apikeys
from tests.conftest import fresh_database
from tests.infra import Infra


@pytest.fixture
async def conn(unit_db_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    c = await asyncpg.connect(unit_db_url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture(scope="session")
async def keys_db_url(infra: Infra) -> str:
    return await fresh_database(infra, "helpline_keys")


async def helpline_keys(database_url: str, *args: str) -> tuple[int, str, str]:
    """Runs `helpline keys ...`; (exit code, stdout, stderr)."""
    env = {**os.environ, "HELPLINE_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "helpline_cli.main",
        "keys",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_created_key_verifies_with_its_scopes_and_records_its_use(
    conn: asyncpg.Connection[Any],
) -> None:
    key_id, key = await apikeys.create(conn, ["submit", "read"], "school-a", "intake", "ops")
    assert key.startswith(f"hk_{key_id}_")
    before = await conn.fetchval(
        "SELECT last_used_at FROM access.api_keys WHERE key_id = $1", key_id
    )
    assert before is None
    info = await apikeys.verify(conn, key)
    assert info is not None
    assert (info.key_id, info.name, info.source, info.created_by) == (
        key_id,
        "intake",
        "school-a",
        "ops",
    )
    assert info.scopes == {"submit", "read"}
    assert info.revoked_at is None
    assert info.last_used_at is not None
    other_id, other = await apikeys.create(conn, ["read"], None, "", "ops")
    assert other_id != key_id
    assert other != key


async def test_only_a_salted_hash_of_the_secret_is_stored(conn: asyncpg.Connection[Any]) -> None:
    key_id, key = await apikeys.create(conn, ["admin"], None, "ops key", "ops")
    secret = key.removeprefix(f"hk_{key_id}_")
    assert len(secret) >= 43
    row = await conn.fetchrow("SELECT * FROM access.api_keys WHERE key_id = $1", key_id)
    assert row is not None
    assert secret not in str(dict(row))
    assert key.encode() not in (bytes(row["secret_hash"]), bytes(row["secret_salt"]))
    salted = bytes(row["secret_salt"]) + secret.encode()
    assert bytes(row["secret_hash"]) == hashlib.sha256(salted).digest()
    twin_id, _ = await apikeys.create(conn, ["admin"], None, "ops key", "ops")
    salts = await conn.fetch(
        "SELECT secret_salt FROM access.api_keys WHERE key_id = ANY($1::text[])", [key_id, twin_id]
    )
    assert len({bytes(s["secret_salt"]) for s in salts}) == 2


async def test_a_revoked_key_fails_and_revoking_an_unknown_id_says_so(
    conn: asyncpg.Connection[Any],
) -> None:
    key_id, key = await apikeys.create(conn, ["read"], None, "dashboard", "ops")
    assert await apikeys.verify(conn, key) is not None
    assert await apikeys.revoke(conn, key_id) is True
    assert await apikeys.verify(conn, key) is None
    first = await conn.fetchval("SELECT revoked_at FROM access.api_keys WHERE key_id = $1", key_id)
    assert await apikeys.revoke(conn, key_id) is True
    again = await conn.fetchval("SELECT revoked_at FROM access.api_keys WHERE key_id = $1", key_id)
    assert first == again
    assert await apikeys.revoke(conn, "000000000000") is False
    listed = {k.key_id: k for k in await apikeys.list_keys(conn)}
    assert listed[key_id].revoked_at == first


async def test_tampered_and_malformed_keys_fail(conn: asyncpg.Connection[Any]) -> None:
    key_id, key = await apikeys.create(conn, ["practitioner"], None, "p", "ops")
    other_id, _ = await apikeys.create(conn, ["practitioner"], None, "q", "ops")
    secret = key.removeprefix(f"hk_{key_id}_")
    flipped = ("B" if secret[5] == "A" else "A").join((secret[:5], secret[6:]))
    presented = [
        f"hk_{key_id}_{flipped}",
        f"hk_{other_id}_{secret}",
        f"hk_{key_id}_{secret[:-1]}",
        f"hk_{key_id}_{secret}x",
        key.upper(),
        f"Bearer {key}",
        f"hk_{key_id}_",
        key_id,
        "",
        "hk_' OR 1=1 --_" + secret,
    ]
    for p in presented:
        assert await apikeys.verify(conn, p) is None, p
    assert await apikeys.verify(conn, key) is not None


def key_with(*scopes: str) -> apikeys.KeyInfo:
    return apikeys.KeyInfo(
        key_id="0" * 12,
        name="",
        scopes=frozenset(scopes),
        source="s" if "submit" in scopes else None,
        created_at=None,  # type: ignore[arg-type]
        created_by="t",
        revoked_at=None,
        last_used_at=None,
    )


@pytest.mark.parametrize(
    ("held", "granted"),
    [
        (("submit",), {"submit"}),
        (("read",), {"read"}),
        (("practitioner",), {"practitioner", "read"}),
        (("admin",), {"admin"}),
        (("submit", "read"), {"submit", "read"}),
        (("admin", "practitioner"), {"admin", "practitioner", "read"}),
    ],
)
def test_scope_rules(held: tuple[str, ...], granted: set[str]) -> None:
    key = key_with(*held)
    assert {s for s in apikeys.SCOPES if key.allows(s)} == granted
    assert not key.allows("everything")


@pytest.mark.parametrize(
    ("scopes", "source", "says"),
    [
        (["owner"], None, "unknown scope(s) owner"),
        ([], None, "at least one scope"),
        (["submit"], None, "needs --source"),
        (["submit"], "  ", "needs --source"),
        (["read"], "school-a", "no submit scope"),
    ],
)
async def test_bad_requests_are_refused_and_store_nothing(
    conn: asyncpg.Connection[Any], scopes: list[str], source: str | None, says: str
) -> None:
    before = await conn.fetchval("SELECT count(*) FROM access.api_keys")
    with pytest.raises(apikeys.KeyRequestError, match=says.replace("(", r"\(").replace(")", r"\)")):
        await apikeys.create(conn, scopes, source, "", "ops")
    assert await conn.fetchval("SELECT count(*) FROM access.api_keys") == before


async def test_the_command_creates_lists_and_revokes_keys(keys_db_url: str) -> None:
    code, out, err = await helpline_keys(
        keys_db_url,
        "create",
        "--scope",
        "submit",
        "--scope",
        "read",
        "--source",
        "school-a",
        "--name",
        "school A's system",
    )
    assert code == 0, err
    lines = out.splitlines()
    key = lines[-1]
    assert len(lines) >= 2
    assert key.startswith("hk_")
    assert key == key.strip()
    assert key.split("_", 2)[2] not in "\n".join(lines[:-1])
    conn = await asyncpg.connect(keys_db_url)
    try:
        info = await apikeys.verify(conn, key)
        assert info is not None
        assert info.scopes == {"submit", "read"}
        assert (info.source, info.name) == ("school-a", "school A's system")
        stored = await conn.fetchrow(
            "SELECT secret_hash, secret_salt FROM access.api_keys WHERE key_id = $1", info.key_id
        )
        assert stored is not None
    finally:
        await conn.close()

    code, listing, err = await helpline_keys(keys_db_url, "list")
    assert code == 0, err
    row = next(line for line in listing.splitlines() if line.startswith(info.key_id))
    assert "school-a" in row
    assert "read,submit" not in row
    assert "submit,read" in row
    assert key.split("_", 2)[2] not in listing
    for value in stored.values():
        assert bytes(value).hex() not in listing

    assert (await helpline_keys(keys_db_url, "revoke", info.key_id))[0] == 0
    code, _, err = await helpline_keys(keys_db_url, "revoke", "ffffffffffff")
    assert (code, err.strip()) == (1, "no key ffffffffffff")
    code, listing, _ = await helpline_keys(keys_db_url, "list")
    row = next(line for line in listing.splitlines() if line.startswith(info.key_id))
    assert row.split("\t")[6] != "-"
    conn = await asyncpg.connect(keys_db_url)
    try:
        assert await apikeys.verify(conn, key) is None
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scope", "root"], "unknown scope(s) root"),
        (["--scope", "submit"], "needs --source"),
    ],
)
async def test_the_command_refuses_bad_requests_with_exit_2(
    keys_db_url: str, args: list[str], says: str
) -> None:
    code, out, err = await helpline_keys(keys_db_url, "create", *args)
    assert code == 2
    assert says in err
    assert "hk_" not in out
