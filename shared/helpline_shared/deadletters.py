"""The dead-letter protocol every consuming service follows, owned here and nowhere else.

For each consumed batch:

1. :meth:`DeadLetters.screen` takes out records no parser can read (a header value that is
   not UTF-8) and marks them dead with the reason; the rest go to the service.
2. The service validates its records and calls :meth:`DeadLetters.admit` with the ones it
   cannot process *before* it makes any effect. Admission follows the messages in order
   (by partition and offset) through a sliding window; if more than `max_ratio` of the last
   `window` messages were refused, it raises :class:`DeadLetterLimitExceededError` and the
   batch is neither processed nor committed: a bad deploy cannot dead-letter everything.
   A position already admitted (a redelivered batch, or a part of a batch being retried
   alone) is not counted twice. A tripped bound is held for `hold_s` (readiness and
   `/metrics` show it), then released: the held messages are dead-lettered (they can be
   replayed) and the window starts afresh, so the service recovers once the ratio falls.
3. The service marks dead what it could not process (:meth:`add`) and makes its effects.
4. :meth:`flush` publishes the marked dead letters, after the effects, and counts each
   source position once. If the batch's effects fail, :meth:`discard` drops the marks and
   nothing is published.

What is published about a bad message is bounded: the key, the value and header values are
truncated (and the message says so in `dlq_*_truncated` headers with the original sizes), so
a dead letter always fits the broker's message size. Each dead letter carries a
deterministic `dlq_id` (uuid5 of the service and the source position): a dead letter
republished after a crash between publishing and committing has the same id.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import get_logger
from helpline_shared.topics import DEAD_LETTERS

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 512_000
MAX_HEADER_BYTES = 1024
MAX_HEADERS = 64
_REMEMBERED = 100_000  # dead-lettered positions remembered to publish each once
_NAMESPACE = uuid.UUID("6b0f1f4e-4f3a-4c55-9d5e-2a1d8f1c9e77")

log = get_logger("helpline.dead_letters")


def position(record: Record) -> str:
    """Where a record was read, unique even if a topic is recreated (offsets restart)."""
    return f"{record.topic}:{record.partition}:{record.offset}:{record.timestamp}"


def undecodable_header(record: Record) -> str | None:
    """The name of the first header whose value is not UTF-8, if any."""
    for name, value in record.headers or ():
        try:
            (value or b"").decode("utf-8")
        except UnicodeDecodeError:
            return str(name)
    return None


def record_headers(record: Record) -> dict[str, str]:
    """The record's headers as text, bounded in number and size (bad bytes replaced)."""
    out: dict[str, str] = {}
    for name, value in list(record.headers or ())[:MAX_HEADERS]:
        text = (value or b"").decode("utf-8", "replace")
        out[name[:200]] = text[:MAX_HEADER_BYTES]
    return out


class DeadLetterLimitExceededError(RuntimeError):
    """Too large a share of recent messages was refused: likely a bad deploy."""


class DeadLetters:
    """The dead-letter protocol of one consuming service (see the module docstring)."""

    def __init__(
        self,
        service: str,
        *,
        max_ratio: float,
        window: int,
        hold_s: float = 30.0,
        counter: Any | None = None,
        redact: Callable[[bytes], bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.topic = DEAD_LETTERS[service].name
        self._counter = counter
        self._redact = redact
        self._clock = clock
        self._max_ratio = max_ratio
        self._hold_s = hold_s
        self._window: deque[bool] = deque(maxlen=window)
        self._admitted: dict[tuple[str, int], int] = {}
        self._screened: list[Record] = []
        self._pending: dict[str, OutgoingMessage] = {}
        self._published: OrderedDict[str, None] = OrderedDict()
        self.tripped_at: float | None = None
        self.trips = 0
        self.total = 0

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None

    # -- building --------------------------------------------------------------------------

    def dead_letter_id(self, record: Record) -> uuid.UUID:
        return uuid.uuid5(_NAMESPACE, f"{self.service}|{position(record)}")

    def message(self, record: Record, error: str) -> OutgoingMessage:
        """The dead letter for `record`: original bytes (bounded), error and origin."""
        value = record.value or b""
        if self._redact is not None:
            value = self._redact(value)
        key = record.key
        headers = record_headers(record)
        headers.update(
            {
                "dlq_id": str(self.dead_letter_id(record)),
                "dlq_service": self.service,
                "dlq_error": error.replace("\x00", "\\u0000")[:1000],
                "dlq_source_topic": record.topic,
                "dlq_source_partition": str(record.partition),
                "dlq_source_offset": str(record.offset),
                "dlq_source_timestamp": str(record.timestamp),
            }
        )
        if key is not None and len(key) > MAX_KEY_BYTES:
            headers["dlq_key_truncated"] = str(len(key))
            key = key[:MAX_KEY_BYTES]
        if len(value) > MAX_VALUE_BYTES:
            headers["dlq_value_truncated"] = str(len(value))
            value = value[:MAX_VALUE_BYTES]
        if len(record.headers or ()) > MAX_HEADERS:
            headers["dlq_headers_truncated"] = str(len(record.headers))
        return OutgoingMessage(self.topic, value, key, headers)

    def minimal_message(self, message: OutgoingMessage) -> OutgoingMessage:
        """The same dead letter without the original bytes and headers (last resort)."""
        kept = {k: v for k, v in message.headers.items() if k.startswith("dlq_")}
        kept["dlq_value_dropped"] = "the dead letter with its original bytes was refused"
        return OutgoingMessage(self.topic, b"", None, kept)

    # -- the protocol ----------------------------------------------------------------------

    def screen(self, records: Sequence[Record]) -> list[Record]:
        """Marks dead the records no parser can read; returns the others, in order."""
        self._screened = []
        kept: list[Record] = []
        for record in records:
            bad = undecodable_header(record)
            if bad is None:
                kept.append(record)
                continue
            self._screened.append(record)
            self.add(record, f"header {bad[:100]!r} is not valid UTF-8")
        return kept

    def admit(self, records: Sequence[Record], refused: Collection[Record]) -> None:
        """Counts `records` (and the screened ones) into the window, in order.

        `refused` are those the service will not process. Raises
        :class:`DeadLetterLimitExceededError` (nothing counted) when the share of refused
        messages in a full window goes over the limit, until the bound's hold has passed.
        """
        refused_positions = {position(r) for r in refused}
        refused_positions |= {position(r) for r in self._screened}
        fresh = sorted(
            (
                r
                for r in [*records, *self._screened]
                if r.offset > self._admitted.get((r.topic, r.partition), -1)
            ),
            key=lambda r: (r.topic, r.partition, r.offset),
        )
        if not fresh:
            return
        self._count([position(r) in refused_positions for r in fresh])
        for record in fresh:
            key = (record.topic, record.partition)
            self._admitted[key] = max(self._admitted.get(key, -1), record.offset)

    def refuse(self, record: Record) -> None:
        """Counts `record`, already admitted as good, as refused after all (it failed alone):
        a deploy that makes every message fail trips the bound instead of dead-lettering
        everything. Raises like :meth:`admit`."""
        self._count([True])

    def _count(self, refused: Sequence[bool]) -> None:
        """Slides `refused` (in order) into the window, or raises without changing it while
        a tripped bound holds; once the hold has passed the window starts afresh."""
        window = deque(self._window, maxlen=self._window.maxlen)
        over = False
        for flag in refused:
            window.append(flag)
            if flag and len(window) == window.maxlen:
                over = over or sum(window) / len(window) > self._max_ratio
        now = self._clock()
        if over and not self._released(now):
            if self.tripped_at is None:
                self.tripped_at = now
                self.trips += 1
                log.error(
                    "dead-letter limit exceeded; holding the batch",
                    service=self.service,
                    limit=self._max_ratio,
                    window=window.maxlen,
                    hold_s=self._hold_s,
                )
            raise DeadLetterLimitExceededError(
                f"{self.service}: more than {self._max_ratio:.0%} of the last "
                f"{window.maxlen} messages refused"
            )
        if over:  # the hold has passed: let the held messages through, start afresh
            log.warning("dead-letter limit released after its hold", service=self.service)
            window.clear()
        elif self.tripped_at is not None:
            log.info("dead-letter ratio back under the limit", service=self.service)
        self.tripped_at = None
        self._window = window

    def _released(self, now: float) -> bool:
        return self.tripped_at is not None and now - self.tripped_at >= self._hold_s

    def add(self, record: Record, error: str) -> None:
        """Marks `record` dead with `error`; published by :meth:`flush`."""
        self._pending[position(record)] = self.message(record, error)

    def discard(self) -> None:
        """Drops the marks of a batch whose effects failed (it will be redelivered)."""
        self._pending.clear()
        self._screened = []

    async def flush(self, broker: KafkaBroker) -> int:
        """Publishes the marked dead letters not yet published; returns how many."""
        pending = [(p, m) for p, m in self._pending.items() if p not in self._published]
        self._pending.clear()
        self._screened = []
        if not pending:
            return 0
        try:
            await publish_all(broker, [m for _, m in pending])
        except Exception as exc:
            if not _refused_by_broker(exc):
                raise
            # The broker refuses the message itself: publish what can be, without its bytes.
            log.error("dead letter refused by the broker; publishing it without its bytes")
            await publish_all(broker, [self.minimal_message(m) for _, m in pending])
        for pos, _ in pending:
            self._published[pos] = None
            if len(self._published) > _REMEMBERED:
                self._published.popitem(last=False)
        self.total += len(pending)
        if self._counter is not None:
            self._counter.inc(len(pending))
        return len(pending)


def _refused_by_broker(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError) and not exc.retriable
