"""How far behind a service's outbox relay is: the age of its oldest unpublished row.

Exported on the service's `/metrics` as `helpline_outbox_oldest_pending_seconds{service}`
(see :meth:`helpline_shared.observability.ServiceMetrics.outbox_backlog`); the alert
`HelplineOutboxBacklog` fires when it stays over five minutes: state changed in PostgreSQL
but the events describing it are not on Kafka.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from helpline_shared.db import Database

# The first row in relay order (the index on (service, seq)): the one everything waits on.
_OLDEST = """
SELECT extract(epoch FROM clock_timestamp() - created_at)::float8
FROM outbox WHERE service = $1 ORDER BY seq LIMIT 1
"""


async def oldest_pending_seconds(db: Database, service: str) -> float:
    """Seconds since the oldest row of `service`'s outbox not yet published was written;
    0 when every row is published; NaN when the database cannot be asked (unknown, so no
    alert fires on it: the database's own failure is what alerts then)."""
    try:
        # Bounded as a whole: with the database down, taking a connection from the pool
        # (a fresh connect) would otherwise hold the scrape far longer than the query.
        age = await asyncio.wait_for(db.pool.fetchval(_OLDEST, service, timeout=2.0), 2.0)
    except Exception:
        return math.nan
    return max(0.0, float(age)) if age is not None else 0.0


def backlog_reader(db: Database, service: str) -> Callable[[], Awaitable[float]]:
    """A reader for :meth:`ServiceMetrics.outbox_backlog`."""

    async def read() -> float:
        return await oldest_pending_seconds(db, service)

    return read
