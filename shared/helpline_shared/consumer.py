"""What every consuming service shares: raw batches, dead letters with a bound, backoff.

Contract of a batch handler built on :class:`BatchProcessor`: at least once. The batch's
offsets are committed (FastStream `AckPolicy.NACK_ON_ERROR`) only after the handler
returned, i.e. after its effects are durable. A transient failure sleeps with backoff and
re-raises, so FastStream seeks back and the whole batch is redelivered; effects are
idempotent so that is safe. A message that can never be processed is published to the
service's dead-letter topic (original bytes, error, origin) as part of the batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.message import StreamMessage
from pydantic import ValidationError

from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings
from helpline_shared.topics import DEAD_LETTERS

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


async def raw_records(msg: StreamMessage[Any]) -> Any:
    """FastStream decoder that hands the handler the untouched aiokafka records."""
    raw = msg.raw_message
    return list(raw) if isinstance(raw, tuple) else [raw]


def position(record: Record) -> str:
    """Where a record was read, unique even if a topic is recreated (offsets restart)."""
    return f"{record.topic}:{record.partition}:{record.offset}:{record.timestamp}"


def record_headers(record: Record) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}


def describe(exc: ValidationError) -> str:
    """A validation error without the input values (they may hold personal data)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<message>'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    )[:1000]


class DeadLetterLimitExceededError(RuntimeError):
    """Too large a share of recent messages was dead-lettered: likely a bad deploy."""


class DeadLetters:
    """Builds dead-letter messages and stops the consumer when too many are produced.

    Over the last `window` messages, if more than `max_ratio` went to the dead-letter topic,
    :meth:`check` raises, the batch is not committed and the consumer stalls (visible in
    readiness) instead of dead-lettering everything.
    """

    def __init__(
        self,
        service: str,
        *,
        max_ratio: float,
        window: int,
        counter: Any | None = None,
    ) -> None:
        self.service = service
        self._counter = counter
        self.topic = DEAD_LETTERS[service].name
        self._max_ratio = max_ratio
        self._window: deque[bool] = deque(maxlen=window)
        self.total = 0
        self.tripped = False

    def message(self, record: Record, error: str) -> OutgoingMessage:
        headers = record_headers(record)
        headers.update(
            {
                "dlq_service": self.service,
                "dlq_error": error[:1000],
                "dlq_source_topic": record.topic,
                "dlq_source_partition": str(record.partition),
                "dlq_source_offset": str(record.offset),
            }
        )
        return OutgoingMessage(self.topic, record.value or b"", record.key, headers)

    def check(self, processed: int, dead: int) -> None:
        self._window.extend([False] * (processed - dead))
        self._window.extend([True] * dead)
        ratio = sum(self._window) / len(self._window) if self._window else 0.0
        if dead and len(self._window) == self._window.maxlen and ratio > self._max_ratio:
            self.tripped = True
            raise DeadLetterLimitExceededError(
                f"{self.service}: {ratio:.0%} of the last {len(self._window)} messages "
                f"dead-lettered (limit {self._max_ratio:.0%})"
            )
        self.total += dead
        if dead and self._counter is not None:
            self._counter.inc(dead)


class Backoff:
    """Sleeps longer after each consecutive failure; resets on success."""

    def __init__(self, service: str, *, base_s: float = 0.5, max_s: float = 30.0) -> None:
        self._failures = 0
        self._base_s = base_s
        self._max_s = max_s
        self._log = get_logger(f"helpline.{service}.consumer")

    def succeeded(self) -> None:
        self._failures = 0

    async def failed(self, exc: BaseException) -> None:
        self._failures += 1
        delay = min(self._max_s, self._base_s * 2 ** (self._failures - 1))
        self._log.error(
            "batch failed; it will be redelivered",
            error=repr(exc)[:500],
            failures=self._failures,
            retry_in_s=delay,
        )
        await asyncio.sleep(delay)


def batch_subscriber(
    router: KafkaRouter,
    *topics: str,
    service: str,
    settings: Settings,
    process: Callable[[Sequence[Record]], Awaitable[None]],
    description: str,
) -> None:
    """Subscribe `process` to `topics` in batches, committing only after it returns.

    Group `helpline-<service>`; a new group starts from the earliest offset, so nothing
    published before the service first started is skipped.
    """
    backoff = Backoff(service)

    @router.subscriber(
        *topics,
        group_id=f"helpline-{service}",
        batch=True,
        max_records=settings.kafka_batch_max_records,
        batch_timeout_ms=settings.kafka_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=raw_records,
        title=f"{service}:{','.join(topics)}",
        description=description,
    )
    async def handle(records: Any) -> None:
        try:
            await process(records)
        except Exception as exc:
            await backoff.failed(exc)
            raise
        backoff.succeeded()
