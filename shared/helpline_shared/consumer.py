"""What every consuming service shares: raw batches, the dead-letter protocol, retries that
isolate a poison message, and readiness that means "has its partitions and is consuming".

Contract of a batch handler run by :class:`BatchRunner`: at least once. The batch's offsets
are committed (FastStream `AckPolicy.NACK_ON_ERROR`) only after the handler returned, i.e.
after its effects are durable and its dead letters acknowledged. Failures are told apart:

- an infrastructure failure (database or broker unreachable) sleeps with backoff and
  re-raises, so FastStream seeks back and the batch is redelivered; nothing is
  dead-lettered for it, however long it lasts;
- the dead-letter bound (see :mod:`helpline_shared.deadletters`) holds the batch the same
  way, without counting it as a failure of the batch;
- any other error is retried `max_batch_failures` times; then the batch is split in halves,
  in order, until the message that fails alone is found, and that message goes to the
  dead-letter topic with its error while the rest of the batch is processed.

Effects are idempotent, so processing part of a batch again is safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.message import StreamMessage
from pydantic import BaseModel, ValidationError

from helpline_shared.deadletters import (
    DeadLetterLimitExceededError,
    DeadLetters,
    Record,
    position,
    record_headers,
)
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings

__all__ = [
    "BatchRunner",
    "ConsumerHealth",
    "DeadLetterLimitExceededError",
    "DeadLetters",
    "Record",
    "batch_subscriber",
    "describe",
    "is_infrastructure",
    "position",
    "record_headers",
]

Process = Callable[[Sequence[Record]], Awaitable[None]]
PROBE_INTERVAL_S = 0.25


async def raw_records(msg: StreamMessage[Any]) -> Any:
    """FastStream decoder that hands the handler the untouched aiokafka records."""
    raw = msg.raw_message
    return list(raw) if isinstance(raw, tuple) else [raw]


def _readable(record: Record) -> Record:
    headers = [(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in record.headers]
    return dataclasses.replace(record, headers=headers)


async def tolerant_parser(msg: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's batch parser, except that a header value that is not UTF-8 cannot make
    it raise (which would commit the whole batch unprocessed: faststream issue 2458).

    It parses copies whose bad bytes are replaced, then hands on the untouched records,
    so the dead-letter protocol can refuse that one message with the reason.
    """
    records = msg if isinstance(msg, tuple) else (msg,)
    parsed = await original(tuple(_readable(r) for r in records))
    parsed.raw_message = msg
    return parsed


def describe(exc: ValidationError) -> str:
    """A validation error without the input values (they may hold personal data)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<message>'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    )[:1000]


def admit_by_topic(
    records: Sequence[Record], models: Mapping[str, type[BaseModel]], service: str
) -> tuple[list[BaseModel], list[tuple[Record, str]]]:
    """The records of a consumer over several topics parsed by each topic's model, and the
    records refused with why (a topic it does not read, or an invalid payload; never the
    values), for the dead-letter protocol."""
    events: list[BaseModel] = []
    refused: list[tuple[Record, str]] = []
    for record in records:
        model = models.get(record.topic)
        if model is None:
            refused.append((record, f"{service} does not read {record.topic}"))
            continue
        try:
            events.append(model.model_validate_json(record.value or b""))
        except ValidationError as exc:
            refused.append((record, f"invalid {record.topic}: {describe(exc)}"))
    return events, refused


def is_infrastructure(exc: BaseException) -> bool:
    """True for failures of the database or broker themselves, not of one message."""
    if isinstance(exc, asyncpg.DataError):
        return False
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError,
    )


class ConsumerHealth(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whether the service's consumer has its partitions and is making progress.

    Ready once the group has handed it an assignment (possibly empty: an instance beyond
    the topic's partitions is idle, not broken) and while no batch has been failing for
    longer than `stuck_after_s`.
    """

    def __init__(self, stuck_after_s: float = 30.0) -> None:
        self.assigned: set[TopicPartition] | None = None
        self.failing_since: float | None = None
        self.failures = 0
        self._stuck_after_s = stuck_after_s

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned = set(assigned)

    def failed(self) -> None:
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def succeeded(self) -> None:
        self.failures = 0
        self.failing_since = None

    @property
    def stuck(self) -> bool:
        return (
            self.failing_since is not None
            and time.monotonic() - self.failing_since > self._stuck_after_s
        )

    @property
    def ready(self) -> bool:
        return self.assigned is not None and not self.stuck

    def detail(self) -> dict[str, Any]:
        return {
            "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned or ()),
            "assigned": self.assigned is not None,
            "failing_for_s": (
                round(time.monotonic() - self.failing_since, 1) if self.failing_since else 0
            ),
            "stuck": self.stuck,
        }


class BatchRunner:
    """Runs a service's `process` on consumed batches under the dead-letter protocol.

    :meth:`run` returns only when the batch's effects are durable and its dead letters
    published; it raises (so the batch is redelivered) otherwise.
    """

    def __init__(
        self,
        service: str,
        process: Process,
        dead_letters: DeadLetters,
        broker: KafkaBroker,
        *,
        health: ConsumerHealth | None = None,
        probes: Sequence[Callable[[], Awaitable[bool]]] = (),
        max_batch_failures: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.service = service
        self._process = process
        self._dead = dead_letters
        self._broker = broker
        self.health = health or ConsumerHealth()
        self._probes = tuple(probes)
        self._max_failures = max_batch_failures
        self._base_s = backoff_base_s
        self._max_s = backoff_max_s
        self._batch_failures = 0
        self._log = get_logger(f"helpline.{service}.consumer")

    async def run(self, records: Sequence[Record]) -> None:
        # Failures count until a batch succeeds, whatever its first position: a poisoned
        # batch redelivered with other partitions' records in front is still the same trouble.
        try:
            if self._batch_failures >= self._max_failures:
                await self._isolate(records)
            else:
                await self._attempt(records)
        except DeadLetterLimitExceededError as exc:
            self.health.failed()
            await self._sleep(exc, hold=True)
            raise
        except Exception as exc:
            self.health.failed()
            if not is_infrastructure(exc):
                self._batch_failures += 1
                await self._sleep(exc)
            else:
                await self._sleep(exc, until_reachable=True)
            raise
        self.health.succeeded()
        self._batch_failures = 0

    async def _attempt(self, records: Sequence[Record]) -> None:
        good = self._dead.screen(records)
        try:
            if good:
                await self._process(good)
            else:
                self._dead.admit([], [])
        except BaseException:
            self._dead.discard()
            raise
        await self._dead.flush(self._broker)

    async def _isolate(self, records: Sequence[Record]) -> None:
        """Processes `records` in halves, in order, dead-lettering what fails alone."""
        try:
            await self._attempt(records)
            return
        except DeadLetterLimitExceededError:
            raise
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            if len(records) > 1:
                middle = len(records) // 2
                await self._isolate(records[:middle])
                await self._isolate(records[middle:])
                return
            error = f"failed alone {self._max_failures + 1} times: {type(exc).__name__}"
            detail = str(exc).replace("\n", " ")[:300]
            self._log.error(
                "message dead-lettered after failing alone",
                position=position(records[0]),
                error=type(exc).__name__,
            )
        self._dead.refuse(records[0])
        self._dead.add(records[0], f"{error}: {detail}")
        await self._dead.flush(self._broker)

    async def _reachable(self) -> bool:
        for probe in self._probes:
            try:
                if not await asyncio.wait_for(probe(), 1.0):
                    return False
            except Exception:
                return False
        return True

    async def _sleep(
        self, exc: BaseException, *, hold: bool = False, until_reachable: bool = False
    ) -> None:
        """Backs off; after an outage, stops waiting as soon as every dependency answers
        again (probed every `PROBE_INTERVAL_S`) instead of sleeping the backoff out."""
        delay = min(self._max_s, self._base_s * 2 ** max(0, self.health.failures - 1))
        self._log.error(
            "batch held by the dead-letter limit; it will be redelivered"
            if hold
            else "batch failed; it will be redelivered",
            error=type(exc).__name__,
            detail=str(exc)[:300],
            failures=self.health.failures,
            batch_failures=self._batch_failures,
            retry_in_s=delay,
        )
        if not (until_reachable and self._probes):
            await asyncio.sleep(delay)
            return
        deadline = asyncio.get_running_loop().time() + delay
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(min(PROBE_INTERVAL_S, delay))
            if await self._reachable():
                return


def batch_subscriber(
    router: KafkaRouter,
    *topics: str,
    service: str,
    settings: Settings,
    runner: BatchRunner,
    description: str,
    background: bool = False,
) -> None:
    """Subscribe `runner` to `topics` in batches, committing only after it returns.

    A consumer on the reports' path fetches with `kafka_fetch_max_wait_ms` (short: the
    embedded broker holds an empty fetch that long even when records arrive); a
    `background` one, read by people rather than the next stage, with the longer
    `kafka_background_fetch_max_wait_ms`. Either holds at most `kafka_fetch_max_bytes` of
    fetched records in memory beyond the batch in hand.

    Group `helpline-<service>`; a new group starts from the earliest offset, so nothing
    published before the service first started is skipped. The runner's health object
    hears every rebalance.
    """

    @router.subscriber(
        *topics,
        group_id=f"helpline-{service}",
        group_instance_id=settings.kafka_group_instance_id,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 3),
        batch=True,
        max_records=settings.kafka_batch_max_records,
        batch_timeout_ms=settings.kafka_batch_timeout_ms,
        fetch_max_wait_ms=(
            settings.kafka_background_fetch_max_wait_ms
            if background
            else settings.kafka_fetch_max_wait_ms
        ),
        fetch_max_bytes=settings.kafka_fetch_max_bytes,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=tolerant_parser,
        decoder=raw_records,
        listener=runner.health,
        title=f"{service}:{','.join(topics)}",
        description=description,
    )
    async def handle(records: Any) -> None:
        await runner.run(records)
