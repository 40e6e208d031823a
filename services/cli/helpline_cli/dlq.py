"""`helpline dlq list|show|replay`: read dead letters and refused reports, re-drive them.

A dead letter (`helpline.<service>.dlq`, see `helpline_shared.deadletters`) carries the
message's bytes, key and headers plus `dlq_*` headers: its id, the error, where it was read
(source topic, partition, offset, timestamp) and what was cut. A refusal on
`helpline.reports.rejected` is a `ReportRejectedV1`: its id is the event id, its origin the
source position, its "error" the reasons. Both are read as :class:`Letter`.

Nothing personal reaches the screen: `show` prints payloads and header values through
intake's redaction (personal fields, email addresses and phone numbers replaced), and a
payload that is not JSON is withheld. Replaying is in :mod:`helpline_cli.dlq_replay`.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from helpline_intake.redaction import redact
from helpline_shared.deadletters import MAX_HEADER_BYTES
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings
from helpline_shared.topics import DEAD_LETTERS, REPORTS_REJECTED

DEAD_LETTER_TOPICS = tuple(t.name for t in DEAD_LETTERS.values())
READABLE = (*DEAD_LETTER_TOPICS, REPORTS_REJECTED.name)
# Services whose dead letters hold a redacted copy, not the original bytes (intake's app
# passes `redact_dead_letter`): the original is read back from its source position.
REDACTED_DEAD_LETTERS = frozenset({"intake"})


@dataclass(frozen=True)
class Letter:
    """One dead letter or refusal, as read from its topic."""

    id: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    error: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    source_timestamp_ms: int | None = None
    # Why `value`/`key`/`headers` are not the original message (then it is read back from
    # its source position, or for a refusal from intake's table); empty when they are.
    not_original: list[str] = field(default_factory=list)

    @property
    def origin(self) -> str:
        if self.source_topic is None:
            return "-"
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"

    @property
    def time(self) -> str:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the message had, without the dead-letter ones."""
        return [(k, v) for k, v in self.headers if not k.startswith("dlq_")]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def from_dead_letter(record: Any) -> Letter:
    """A `helpline.<service>.dlq` record as a :class:`Letter`."""
    h = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or ()}
    cut = [f"{name} (was {h[name]} bytes)" for name in h if name.endswith("_truncated")]
    if "dlq_value_dropped" in h:
        cut.append("the value was dropped")
    if h.get("dlq_service") in REDACTED_DEAD_LETTERS:
        cut.append("the value is a redacted copy")
    # Header values are copied as text, cut to a bound without a flag: suspect both.
    copied = [v for k, v in h.items() if not k.startswith("dlq_")]
    if any(len(v) >= MAX_HEADER_BYTES or "\ufffd" in v for v in copied):
        cut.append("a header may be cut or was not UTF-8")
    return Letter(
        id=h.get("dlq_id", f"{record.topic}:{record.partition}:{record.offset}"),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value or b"",
        headers=[(k, v or b"") for k, v in record.headers or ()],
        error=h.get("dlq_error", ""),
        source_topic=h.get("dlq_source_topic"),
        source_partition=_int(h.get("dlq_source_partition")),
        source_offset=_int(h.get("dlq_source_offset")),
        source_timestamp_ms=_int(h.get("dlq_source_timestamp")),
        not_original=cut,
    )


def from_rejection(record: Any) -> Letter:
    """A `helpline.reports.rejected` record as a :class:`Letter`; its value is the redacted
    copy the event carries (the original stays in intake's table)."""
    event = json.loads(record.value)
    reasons = "; ".join(f"{r.get('loc')}: {r.get('type')}" for r in event.get("reasons", []))
    key = event.get("key")
    return Letter(
        id=str(event.get("event_id")),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=key.encode() if key is not None else None,
        value=base64.b64decode(event.get("original_base64") or ""),
        headers=[],
        error=f"refused by intake via {event.get('via')}: {reasons}",
        source_topic=event.get("source_topic"),
        source_partition=event.get("source_partition"),
        source_offset=event.get("source_offset"),
        not_original=["a refusal carries a redacted copy"]
        + (["the key was cut"] if event.get("key_size") else []),
    )


def parse(record: Any) -> Letter:
    return (
        from_rejection(record)
        if record.topic == REPORTS_REJECTED.name
        else from_dead_letter(record)
    )


async def read_letters(
    settings: Settings, topics: Sequence[str], *, idle_ms: int = 1000, limit: int | None = None
) -> list[Letter]:
    """Every letter on `topics` from the beginning, read until `idle_ms` pass with nothing
    new (end offsets are not asked: Tansu can misreport them); the last `limit` if given."""
    consumer = AIOKafkaConsumer(
        *topics,
        **client_kwargs(settings, "dlq"),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letters: list[Letter] = []
    try:
        while batch := await consumer.getmany(timeout_ms=idle_ms):
            for records in batch.values():
                letters += [parse(r) for r in records]
    finally:
        await consumer.stop()
    letters.sort(key=lambda x: (x.timestamp_ms, x.topic, x.partition, x.offset))
    return letters[-limit:] if limit else letters


def list_lines(letters: Sequence[Letter], replayed: dict[str, str] | None = None) -> list[str]:
    """`helpline dlq list`: one line per letter; `replayed` notes by id end the lines."""
    notes = replayed or {}
    return [
        f"{x.id}  {x.topic}/{x.partition}@{x.offset}  {x.time}  from {x.origin}  "
        f"{_shown(' '.join(x.error.split())[:100])}"
        + (f"  [{notes[x.id]}]" if x.id in notes else "")
        for x in letters
    ]


async def replay_notes(database_url: str | None, ids: Sequence[str]) -> dict[str, str]:
    """ "replayed by WHO at WHEN" per letter id with a finished replay (empty without a
    database, or before migration 0008)."""
    if not database_url or not ids:
        return {}
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT DISTINCT ON (dlq_id) dlq_id, replayed_by, published_at
               FROM operations.dlq_replays
               WHERE dlq_id = ANY($1::text[]) AND published_at IS NOT NULL
               ORDER BY dlq_id, published_at DESC""",
            list(ids),
        )
    except asyncpg.UndefinedTableError:
        return {}
    finally:
        await conn.close()
    return {
        r["dlq_id"]: f"replayed by {r['replayed_by']} at {r['published_at']:%Y-%m-%dT%H:%M:%SZ}"
        for r in rows
    }


def _shown(text: str) -> str:
    """`text` as it may appear on screen (intake's redaction of a JSON string)."""
    shown = json.loads(redact(json.dumps(text).encode()) or b'"[withheld]"')
    return str(shown)


def show_text(letter: Letter) -> str:
    """`helpline dlq show`: the whole letter, personal data redacted."""
    lines = [
        f"id:       {letter.id}",
        f"read at:  {letter.topic}/{letter.partition}@{letter.offset} ({letter.time})",
        f"origin:   {letter.origin}",
        f"error:    {_shown(letter.error)}",
        f"key:      {_shown(letter.key.decode('utf-8', 'replace')) if letter.key else '-'}",
    ]
    if letter.not_original:
        lines.append(f"copy:     {'; '.join(letter.not_original)}")
    lines.append("headers:")
    lines += [f"  {k}: {_shown(v.decode('utf-8', 'replace'))}" for k, v in letter.headers]
    shown = redact(letter.value)
    lines.append(f"payload ({len(letter.value)} bytes):")
    if shown is None:
        lines.append("  [withheld: not JSON, personal data cannot be told apart]")
    elif shown:
        lines.append(json.dumps(json.loads(shown), indent=2, ensure_ascii=False))
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    """`helpline dlq list|show|replay`."""
    dlq = sub.add_parser("dlq", help="read and replay dead letters (and refused reports)")
    actions = dlq.add_subparsers(dest="action", required=True)
    topic_help = f"one of {', '.join(READABLE)} (default: every dead-letter topic)"
    ls = actions.add_parser("list", help="one line per dead letter")
    ls.add_argument("--topic", choices=READABLE, help=topic_help)
    ls.add_argument("--limit", type=int, default=None, help="only the last N")
    show = actions.add_parser("show", help="one dead letter in full (personal data redacted)")
    show.add_argument("id")
    show.add_argument("--topic", choices=READABLE, help=topic_help)
    replay = actions.add_parser("replay", help="re-publish to the source topic, once")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true", help="every letter on the topic(s)")
    replay.add_argument("--topic", choices=READABLE, help=topic_help)
    replay.add_argument("--dry-run", action="store_true", help="say what would be done")
    replay.add_argument(
        "--force", action="store_true", help="replay even if replayed before or refused as forged"
    )
    replay.add_argument("--by", default=None, help="who replays (default: $USER)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    topics = [args.topic] if args.topic else list(DEAD_LETTER_TOPICS)
    if args.action == "list":
        letters = await read_letters(settings, topics, limit=args.limit)
        notes = await replay_notes(settings.database_url, [x.id for x in letters])
        print("\n".join([*list_lines(letters, notes), f"{len(letters)} letter(s)"]))
        return 0
    if args.action == "show":
        found = [x for x in await read_letters(settings, topics) if x.id == args.id]
        if not found:
            print(f"no letter {args.id} on {', '.join(topics)}")
            return 1
        print(show_text(found[-1]))
        return 0
    from helpline_cli.dlq_replay import replay_command

    return await replay_command(args, settings, topics)
