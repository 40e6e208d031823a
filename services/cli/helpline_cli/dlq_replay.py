"""`helpline dlq replay`: re-publish dead letters to their source topic, once, recorded.

What is published is the original message: its bytes, key and headers without the `dlq_*`
ones, plus `helpline_replay_of: <letter id>`, to the source topic (partitioned by its key,
as the original was). When the letter does not hold the original (intake's dead letters
and every refusal hold redacted copies; a key, value or header may be cut), it is read back
from its source position, checked to be the same message (its timestamp, or for a refusal
the id derived from that position); a refusal whose source is gone is replayed from the
bytes intake keeps in `intake.rejections` (:func:`rejection_original`, an operator tool
that needs the database). A letter whose original cannot be found is not replayed.

Each replay is recorded in `operations.dlq_replays` (migration 0008): the row is claimed
before publishing and completed after the broker acknowledged, so a second replay of the same
letter is skipped with a message unless `--force`. So is, unless `--force`, a letter
refused as forged (metrics' provenance check): no fix makes it genuine, and replaying it
would put it back on a topic that external systems read. A message replayed twice still has one
effect: the consumers are idempotent (intake per `(source, report_id)`, the others per
event id), which the record does not replace.
"""

from __future__ import annotations

import argparse
import getpass
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import Progress

from helpline_cli.dlq import Letter, read_letters
from helpline_shared.deadletters import position
from helpline_shared.events import derive_id
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_REJECTED

REPLAY_HEADER = "helpline_replay_of"
STALE_CLAIM_S = 60  # an unfinished replay older than this is taken over
# The error metrics gives an event not from the producer the registry names (provenance.py).
FORGED = "forged "


@dataclass(frozen=True)
class Original:
    """The message to publish again."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


async def rejection_original(conn: Any, rejection_id: str) -> bytes | None:
    """The full bytes intake refused (`intake.rejections.original`), kept for its retention
    period; None when purged or unknown. Operator tool: needs access to intake's tables."""
    try:
        rid = uuid.UUID(rejection_id)
    except ValueError:
        return None
    value = await conn.fetchval(
        "SELECT original FROM intake.rejections WHERE rejection_id = $1", rid
    )
    return bytes(value) if value is not None else None


async def read_at(settings: Settings, topic: str, partition: int, offset: int) -> Any | None:
    """The record at `topic`/`partition`/`offset`, or None when it is no longer there."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings, "dlq-source"),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        while batch := await consumer.getmany(tp, timeout_ms=2000):
            for record in batch.get(tp, []):
                if record.offset >= offset:
                    return record if record.offset == offset else None
        return None
    finally:
        await consumer.stop()


def _same_message(letter: Letter, record: Any) -> bool:
    if letter.topic == REPORTS_REJECTED.name:  # intake derives a refusal's id from it
        return str(derive_id("rejected", position(record))) == letter.id
    return letter.source_timestamp_ms is None or record.timestamp == letter.source_timestamp_ms


async def original(settings: Settings, letter: Letter, conn: Any | None) -> Original | str:
    """The message to replay for `letter`, or why there is none."""
    if letter.source_topic is None:
        return "no source topic (it came through the HTTP API or the form): resubmit it there"
    if not letter.not_original:
        return Original(letter.source_topic, letter.key, letter.value, letter.original_headers())
    if letter.source_partition is not None and letter.source_offset is not None:
        record = await read_at(
            settings, letter.source_topic, letter.source_partition, letter.source_offset
        )
        if record is not None and _same_message(letter, record):
            headers = [(k, v or b"") for k, v in record.headers or ()]
            return Original(letter.source_topic, record.key, record.value or b"", headers)
    if letter.topic == REPORTS_REJECTED.name and conn is not None:
        kept = await rejection_original(conn, letter.id)
        if kept is not None and "the key was cut" not in letter.not_original:
            return Original(letter.source_topic, letter.key, kept, [])
    return f"the original is gone ({'; '.join(letter.not_original)}; not at its source)"


async def claim(conn: Any, letter: Letter, target: str, by: str, *, force: bool) -> int | str:
    """Records the start of a replay; returns its row id, or why it is skipped."""
    args = (letter.id, letter.topic, letter.partition, letter.offset, target, by)
    insert = """INSERT INTO operations.dlq_replays
                  (dlq_id, dlq_topic, dlq_partition, dlq_offset, target_topic, replayed_by, forced)
                VALUES ($1, $2, $3, $4, $5, $6, $7)"""
    rid = await conn.fetchval(
        insert + " ON CONFLICT (dlq_id) WHERE NOT forced DO NOTHING RETURNING replay_id",
        *args,
        False,
    )
    if rid is not None:
        return int(rid)
    if force:
        return int(await conn.fetchval(insert + " RETURNING replay_id", *args, True))
    taken = await conn.fetchval(
        """UPDATE operations.dlq_replays SET replayed_by = $2, started_at = now()
           WHERE dlq_id = $1 AND NOT forced AND published_at IS NULL
             AND started_at < now() - make_interval(secs => $3)
           RETURNING replay_id""",
        letter.id,
        by,
        STALE_CLAIM_S,
    )
    if taken is not None:
        return int(taken)
    row = await conn.fetchrow(
        """SELECT replayed_by, started_at, published_at FROM operations.dlq_replays
           WHERE dlq_id = $1 AND NOT forced""",
        letter.id,
    )
    when = row["published_at"] or row["started_at"]
    state = "already replayed" if row["published_at"] else "being replayed"
    return f"{state} by {row['replayed_by']} at {when:%Y-%m-%d %H:%M:%S%z} (--force to repeat)"


async def replay_one(
    settings: Settings,
    producer: AIOKafkaProducer | None,
    conn: Any | None,
    letter: Letter,
    *,
    by: str,
    force: bool,
) -> tuple[str, str]:
    """Replays one letter (a dry run without `producer`); returns (outcome, detail)."""
    if letter.error.startswith(FORGED) and not force:
        return "skipped", (
            "refused as not from its registered producer; a replay would publish it again "
            "(--force if the registry was wrong)"
        )
    found = await original(settings, letter, conn)
    if isinstance(found, str):
        return "failed", found
    detail = f"{len(found.value)} bytes to {found.topic}"
    if producer is None:
        return "would replay", detail
    assert conn is not None
    claimed = await claim(conn, letter, found.topic, by, force=force)
    if isinstance(claimed, str):
        return "skipped", claimed
    headers = [(k, v) for k, v in found.headers if k != REPLAY_HEADER]
    headers.append((REPLAY_HEADER, letter.id.encode()))
    try:
        await producer.send_and_wait(found.topic, found.value, key=found.key, headers=headers)
    except BaseException:
        await conn.execute("DELETE FROM operations.dlq_replays WHERE replay_id = $1", claimed)
        raise
    await conn.execute(
        "UPDATE operations.dlq_replays SET published_at = now() WHERE replay_id = $1", claimed
    )
    return "replayed", detail


def choose(letters: Sequence[Letter], ids: Sequence[str], every: bool) -> list[Letter | str]:
    """The letters to replay, once per id, in order; an id not found stays as its text."""
    by_id = {x.id: x for x in letters}
    if every:
        return list(by_id.values())
    return [by_id.get(i, i) for i in dict.fromkeys(ids)]


async def replay_command(args: argparse.Namespace, settings: Settings, topics: list[str]) -> int:
    """`helpline dlq replay`; prints one line per letter and a summary, returns the code."""
    if bool(args.ids) == bool(args.all):
        print("name the letters to replay, or --all")
        return 2
    if not settings.database_url and not args.dry_run:
        print("set HELPLINE_DATABASE_URL: replays are recorded in the database")
        return 2
    by = args.by or os.environ.get("USER") or getpass.getuser()
    chosen = choose(await read_letters(settings, topics), args.ids, args.all)
    conn = await asyncpg.connect(settings.database_url) if settings.database_url else None
    producer = None
    if not args.dry_run:
        producer = AIOKafkaProducer(
            **client_kwargs(settings, "dlq-replay"),
            acks="all",
            enable_idempotence=settings.kafka_enable_idempotence,
        )
        await producer.start()
    outcomes: Counter[str] = Counter()
    try:
        with Progress(console=Console(highlight=False), transient=True) as progress:
            task = progress.add_task("replaying", total=len(chosen), visible=len(chosen) > 1)
            for item in chosen:
                if isinstance(item, str):
                    outcome, detail, name = "failed", "no such letter", item
                else:
                    name = item.id
                    outcome, detail = await replay_one(
                        settings, producer, conn, item, by=by, force=args.force
                    )
                outcomes[outcome] += 1
                progress.console.print(f"{name}: {outcome}: {detail}", soft_wrap=True, markup=False)
                progress.advance(task)
    finally:
        if producer is not None:
            await producer.stop()
        if conn is not None:
            await conn.close()
    print(", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "nothing to replay")
    return 1 if outcomes["failed"] else 0
