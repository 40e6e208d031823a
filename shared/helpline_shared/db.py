"""asyncpg pool helpers and ordered SQL migrations recorded in the database.

Migrations are the `NNNN_name.sql` files in this package's `migrations/` folder, applied in
name order, each in its own transaction, under an advisory lock so that concurrent
`helpline db migrate` runs apply each file exactly once.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from helpline_shared.logging import get_logger

_MIGRATION_LOCK = 7_112_024

# A connection, whether direct or borrowed from a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: no code here changes a
    session's state (no session advisory locks, LISTEN, SET or cursor outside a
    transaction), and asyncpg itself still rolls back a transaction left open. asyncpg's
    default reset costs a round trip (`SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`) on every release: one more statement for every piece of work."""


async def create_pool(url: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections encode and decode json/jsonb as Python objects, and are
    handed back without a reset query (see `_keep_session`)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=60,
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("helpline_shared") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in files]


async def migrate(url: str) -> list[str]:
    """Apply pending migrations in order; returns the versions applied by this call."""
    log = get_logger("helpline.db")
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS helpline_migrations (
                   version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM helpline_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO helpline_migrations (version) VALUES ($1)", version)
            applied.append(version)
            log.info("migration applied", version=version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied


class Database:
    """A pool opened in a service's startup hook and closed in its shutdown hook."""

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self._url = url
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database pool is not open yet")
        return self._pool

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(self._url, max_size=self._max_size)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ready(self) -> bool:
        return self._pool is not None and await self._pool.fetchval("SELECT 1") == 1
