"""`helpline intake purge`: enforce the retention of refused messages' bytes."""

from __future__ import annotations

import sys

import asyncpg

from helpline_intake.repository import purge_originals as purge
from helpline_shared.settings import Settings


async def purge_originals(settings: Settings, older_than_days: int | None) -> int:
    """Clear the bytes of refusals older than the retention period; prints how many."""
    if not settings.database_url:
        print("set HELPLINE_DATABASE_URL", file=sys.stderr)
        return 2
    days = settings.intake_original_retention_days if older_than_days is None else older_than_days
    if days < 0:
        print("--older-than-days must be 0 or more", file=sys.stderr)
        return 2
    conn = await asyncpg.connect(settings.database_url)
    try:
        cleared = await purge(conn, days)
    finally:
        await conn.close()
    print(f"cleared the original bytes of {cleared} rejection(s) older than {days} day(s)")
    return 0
