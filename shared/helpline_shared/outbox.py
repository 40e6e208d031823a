"""Transactional outbox: events written in the same transaction as the state they describe.

Delivery: at least once. A row is deleted only after the broker acknowledged it, so a crash
between publish and delete republishes it; events carry deterministic ids and consumers
deduplicate.

Order, per key (the escalator keys by case id, so per case, and so per escalation): the
events of one key are published in the order their transactions committed. `add` takes a
transaction-scoped lock per key before inserting, so a second transaction writing the same
key waits until the first commits or rolls back; one key's rows therefore get their `seq`
in commit order, and no row of a key becomes visible while an earlier one of that key is
still uncommitted. The relay publishes in `seq` order, one relay per service at a time (an
advisory lock across replicas). Events of different keys have no order between them.

Shutdown: `stop` publishes everything committed by then (bounded by its timeout).

Tracing: a row keeps the trace context of the work that added it (its `traceparent`
header), so the relayed event continues that trace; a message given with a `traceparent`
of its own continues that one instead. A service that does not trace writes none.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from faststream.kafka import KafkaBroker

from helpline_shared import tracing
from helpline_shared.db import Conn, Database
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import get_logger
from helpline_shared.loop import WorkLoop

_INSERT = """
INSERT INTO outbox (service, topic, key, value, headers)
SELECT $1, t, k, v, h::jsonb
FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::text[]) AS u(t, k, v, h)
"""
# Locks taken in one order (by hash) in one statement, so two writers cannot deadlock here.
_LOCK_KEYS = """
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtextextended('outbox:' || $1 || ':' || encode(k, 'hex'), 0) AS h
    FROM unnest($2::bytea[]) AS k WHERE k IS NOT NULL
    ORDER BY h
) AS keys
"""
_CLAIM = """
SELECT seq, topic, key, value, headers FROM outbox
WHERE service = $1 ORDER BY seq LIMIT $2
"""


class Outbox:
    """Writes events inside a caller's transaction and relays them to Kafka in order."""

    def __init__(
        self,
        db: Database,
        broker: KafkaBroker,
        service: str,
        *,
        batch_size: int = 1000,
        idle_interval_s: float = 1.0,
    ) -> None:
        self._db = db
        self._broker = broker
        self._service = service
        self._batch_size = batch_size
        self._loop = WorkLoop(
            f"{service}-outbox",
            self._step,
            idle_s=idle_interval_s,
            # After an outage the relay resumes as soon as both answer again.
            probes=[db.ready, lambda: broker.ping(timeout=2.0)],
        )
        self._log = get_logger(f"helpline.{service}.outbox")

    async def add(self, conn: Conn, messages: Sequence[OutgoingMessage]) -> None:
        """Insert messages using `conn`; they are relayed once its transaction commits, after
        every event of the same key committed before it. Holds a lock per key until then."""
        if not messages:
            return
        await conn.execute(_LOCK_KEYS, self._service, list({m.key for m in messages}))
        await conn.execute(
            _INSERT,
            self._service,
            [m.topic for m in messages],
            [m.key for m in messages],
            [m.value for m in messages],
            [json.dumps(self._stamped(m)) for m in messages],
        )

    def _stamped(self, m: OutgoingMessage) -> dict[str, str]:
        """The headers a row keeps: with the trace context it continues when tracing,
        without any (not even one the message brought) when not."""
        if tracing.of(self._broker) is None:
            return {k: v for k, v in m.headers.items() if k not in ("traceparent", "tracestate")}
        return tracing.stamped(self._broker, m.headers, m.key)

    def wake(self) -> None:
        """Ask the relay to run now rather than at its next idle tick."""
        self._loop.wake()

    async def relay_once(self) -> int:
        """Publish up to one batch of pending rows; returns how many were published."""
        async with self._db.pool.acquire() as conn, conn.transaction():
            # One relay per service at a time, or two replicas would interleave and reorder.
            if not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext('outbox:' || $1))", self._service
            ):
                return 0
            rows = await conn.fetch(_CLAIM, self._service, self._batch_size)
            if not rows:
                return 0
            await publish_all(
                self._broker,
                [OutgoingMessage(r["topic"], r["value"], r["key"], r["headers"]) for r in rows],
            )
            await conn.execute(
                "DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows]
            )
            return len(rows)

    async def _step(self) -> bool:
        return await self.relay_once() >= self._batch_size

    def start(self) -> None:
        self._loop.start()

    async def drain(self) -> None:
        """Publish every row committed so far (batch after batch until none is left)."""
        while await self.relay_once():
            pass

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the relay, then publish everything already committed, within `timeout_s`.
        Call it after the writers stopped, so that nothing is committed after the drain."""
        await self._loop.stop(min(2.0, timeout_s))
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except Exception:
            self._log.exception("outbox not fully relayed at shutdown; relayed at next start")
