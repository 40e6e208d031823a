"""Recomputing every total from the beginning of the topics metrics follows.

`helpline metrics rebuild` (:mod:`helpline_cli.metrics_cli`) runs, in order:

1. :func:`prepare`: a fresh schema `metrics_rebuild` with a table like each of `metrics`
   (columns, defaults, keys and indexes), empty;
2. :func:`replay`: every record of the topics metrics consumes, from the beginning of each
   partition to its end (at least its end offset when the rebuild started, and on until a
   poll finds nothing new), admitted exactly as the service
   admits them (:func:`helpline_metrics.usecase.admit`) and folded by the same code
   (:func:`helpline_metrics.projection.apply` with `schema="metrics_rebuild"`), inbox
   included, so the new tables are what the service would have built;
3. :func:`swap`: in one transaction, `metrics` becomes `metrics_replaced`, `metrics_rebuild`
   becomes `metrics`, and the replaced schema is dropped.

Run it with the metrics service stopped: stop metrics, rebuild, start it. The new inbox
holds every event up to the end of the topics when it read them, so when metrics starts
again from its committed offsets, what it had not committed is redelivered and counted
nothing twice, and what came after is counted once. A service left running while the
rebuild swaps could count a batch into the replaced schema and commit its offsets, and
that batch would be lost from the totals. The topics are kept forever (retention.ms -1, see
`helpline_shared.topics`), so the beginning of each topic is the beginning of the
helpline's history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from helpline_metrics import projection
from helpline_metrics.usecase import TOPICS, admit
from helpline_shared.consumer import Record
from helpline_shared.db import Conn
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings

LIVE, FRESH, REPLACED = "metrics", "metrics_rebuild", "metrics_replaced"


@dataclass
class Replayed:
    """What a replay read: records, events counted and records refused."""

    records: int = 0
    counted: int = 0
    refused: int = 0


async def prepare(conn: Conn) -> list[str]:
    """Creates the empty schema `metrics_rebuild` like `metrics`; returns its tables."""
    tables = [
        r["table_name"]
        for r in await conn.fetch(
            """SELECT table_name FROM information_schema.tables
               WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1""",
            LIVE,
        )
    ]
    async with conn.transaction():
        await conn.execute(f"DROP SCHEMA IF EXISTS {FRESH} CASCADE")
        await conn.execute(f"CREATE SCHEMA {FRESH}")
        for t in tables:
            await conn.execute(f"CREATE TABLE {FRESH}.{t} (LIKE {LIVE}.{t} INCLUDING ALL)")
    return tables


async def replay(
    settings: Settings,
    conn: Conn,
    *,
    on_start: Callable[[int], None] = lambda total: None,
    on_batch: Callable[[int], None] = lambda n: None,
    batch_size: int = 2000,
) -> Replayed:
    """Folds every record of metrics' topics, from the beginning to the end, into
    `metrics_rebuild`; `on_start` gets the number of records the broker says there are,
    `on_batch` each batch's size."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings, "metrics-rebuild"),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    done = Replayed()
    try:
        await consumer.topics()  # the cluster's metadata, with every partition
        partitions = [
            TopicPartition(topic, p)
            for topic in TOPICS
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        on_start(sum(end[tp] - begin[tp] for tp in partitions))
        await consumer.seek_to_beginning(*partitions)
        # Read to the end offsets of the start, then on until a poll finds nothing new (some
        # brokers, Tansu among them, report an end offset short of the last batch).
        while True:
            got = await consumer.getmany(*partitions, timeout_ms=1000, max_records=batch_size)
            batch: list[Record] = [r for records in got.values() for r in records]
            await _fold(conn, batch, done)
            on_batch(len(batch))
            if not batch and all([await consumer.position(tp) >= end[tp] for tp in partitions]):
                break
    finally:
        await consumer.stop()
    return done


async def _fold(conn: Conn, batch: Sequence[Record], done: Replayed) -> None:
    if not batch:
        return
    events, refused = admit(batch)
    async with conn.transaction():
        done.counted += await projection.apply(conn, events, schema=FRESH)
    done.records += len(batch)
    done.refused += len(refused)


async def swap(conn: Conn) -> None:
    """Puts the rebuilt tables in place of the live ones, in one transaction."""
    async with conn.transaction():
        await conn.execute(f"DROP SCHEMA IF EXISTS {REPLACED} CASCADE")
        await conn.execute(f"ALTER SCHEMA {LIVE} RENAME TO {REPLACED}")
        await conn.execute(f"ALTER SCHEMA {FRESH} RENAME TO {LIVE}")
        await conn.execute(f"DROP SCHEMA {REPLACED} CASCADE")


async def headline(conn: Conn, schema: str = LIVE) -> dict[str, int]:
    """A few all-time figures from the counters of `schema`, to compare before and after."""
    rows = await conn.fetch(f"SELECT name, label, value FROM {schema}.counters")
    c = {(r["name"], r["label"]): int(r["value"]) for r in rows}
    return {
        "cases": c.get(("cases_total", ""), 0),
        "url reports": c.get(("urls_total", ""), 0),
        "URLs escalated": c.get(("urls_escalated", ""), 0),
        "escalations": c.get(("escalations_total", ""), 0),
        "decided": c.get(("escalations_by_state", "decided"), 0),
        "takedowns": c.get(("takedowns", ""), 0),
        "reports rejected": c.get(("reports_rejected_total", ""), 0),
        "events counted": int(await conn.fetchval(f"SELECT count(*) FROM {schema}.inbox")),
    }
