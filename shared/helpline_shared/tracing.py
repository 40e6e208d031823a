"""OpenTelemetry tracing: one report is one trace, from intake's HTTP API to metrics.

Off by default; the `OTEL_*` variables turn it on (see :mod:`.tracing_setup`). Off,
nothing of OpenTelemetry is imported and no header is added. On (needs the `otel` extra),
each service has its own tracer provider, `service.name` = `OTEL_SERVICE_NAME` or
`helpline-<service>`.

What carries the trace (W3C `traceparent` in Kafka headers):
- the FastStream `KafkaTelemetryMiddleware` makes a span per publish and per consumed batch
  (a batch span starts its own trace and links to every message's context);
- :meth:`Tracing.per_record` gives each consumed record a span whose parent is the
  context in its headers, so the work on one report continues that report's trace;
- a message published during that work continues the record it came from: the one with
  the same key, or the one named by :func:`follows` when the key changes (intake);
- :func:`stamped` writes the context into an outbox row when it is added, so an event
  relayed later continues the work that created it;
- :meth:`Tracing.server` starts (or continues) a trace per HTTP request.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from helpline_shared.tracing_setup import TracingSettings, capture_spans, tracer_provider

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Tracing", "TracingSettings", "capture_spans", "configure", "follows", "of"]

Process = Callable[[Sequence[Any]], Awaitable[None]]


_traced: weakref.WeakKeyDictionary[Any, Tracing] = weakref.WeakKeyDictionary()


@dataclass
class _Records:
    """The contexts of the records of the batch being processed, by position and by key."""

    by_position: dict[tuple[str, int, int], Context] = field(default_factory=dict)
    by_key: dict[bytes, Context] = field(default_factory=dict)


_records: ContextVar[_Records | None] = ContextVar("helpline_traced_records", default=None)


def _key(key: object) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()


def _position(record: Any) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


def configure(service: str, settings: TracingSettings | None = None) -> Tracing | None:
    """The service's tracing per the `OTEL_*` variables (see :mod:`.tracing_setup`), or
    None when tracing is off."""
    provider = tracer_provider(service, settings)
    return None if provider is None else Tracing(service, provider)


def of(broker: object) -> Tracing | None:
    """The tracing of the service that owns `broker`; None when it does not trace."""
    return _traced.get(broker)


def follows(record: Any, key: object) -> None:
    """Messages published with `key` while this batch is processed continue `record`'s
    trace (for output keyed other than its input). Does nothing when not tracing."""
    records = _records.get()
    if records is not None and (ctx := records.by_position.get(_position(record))) is not None:
        records.by_key.setdefault(_key(key), ctx)


def _parent(headers: Mapping[str, str], key: bytes | None) -> Context | None:
    """The context a message continues: its own `traceparent`, else the consumed record
    with its key, else None (the current context)."""
    if "traceparent" in headers:
        from opentelemetry.propagate import extract

        return extract(headers)
    records = _records.get()
    return records.by_key.get(key) if records is not None and key is not None else None


@contextlib.contextmanager
def publishing(broker: object, headers: Mapping[str, str], key: bytes | None) -> Iterator[None]:
    """Around one publish: makes the message's parent context current, so the telemetry
    middleware's publish span and `traceparent` continue it. No-op when not tracing."""
    parent = _parent(headers, key) if of(broker) is not None else None
    if parent is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(parent)
    try:
        yield
    finally:
        context.detach(token)


def stamped(broker: object, headers: dict[str, str], key: bytes | None) -> dict[str, str]:
    """`headers` with the context of the work creating the message (see :func:`_parent`),
    for a message published later (the outbox). Unchanged when not tracing."""
    if of(broker) is None:
        return headers
    from opentelemetry.propagate import inject

    out = dict(headers)
    inject(out, context=_parent(headers, key))
    return out


class Tracing:
    """One service's tracer provider and the pieces that trace its broker, batches and
    HTTP routes."""

    def __init__(self, service: str, provider: TracerProvider) -> None:
        self.service = service
        self.provider = provider
        self.tracer = provider.get_tracer("helpline")

    def middleware(self) -> Any:
        """FastStream's telemetry middleware on this provider (metrics stay Prometheus')."""
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

        return KafkaTelemetryMiddleware(
            tracer_provider=self.provider, include_messages_counters=False
        )

    def register(self, broker: object) -> None:
        """Marks `broker` as traced: its publish helpers then carry trace contexts."""
        _traced[broker] = self

    def per_record(self, process: Process) -> Process:
        """`process` with a span per record, child of the record's own context and linked
        to the batch span; messages published meanwhile continue their record's trace."""
        from opentelemetry import trace
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        group = f"helpline-{self.service}"

        async def traced(records: Sequence[Any]) -> None:
            batch = trace.get_current_span().get_span_context()
            links = [trace.Link(batch)] if batch.is_valid else None
            scope = _Records()
            spans = []
            for r in records:
                parent = extract({k: (v or b"").decode("latin-1") for k, v in r.headers or ()})
                span = self.tracer.start_span(
                    f"process {r.topic}",
                    context=parent,
                    kind=SpanKind.CONSUMER,
                    links=links,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.operation.type": "process",
                        "messaging.destination.name": r.topic,
                        "messaging.destination.partition.id": str(r.partition),
                        "messaging.kafka.offset": r.offset,
                        "messaging.consumer.group.name": group,
                    },
                )
                spans.append(span)
                ctx = trace.set_span_in_context(span, parent)
                scope.by_position[_position(r)] = ctx
                if r.key is not None:
                    scope.by_key.setdefault(r.key, ctx)
            token = _records.set(scope)
            try:
                await process(records)
            except BaseException as exc:
                for span in spans:
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                _records.reset(token)
                for span in spans:
                    span.end()

        return traced

    def server(self, app: ASGIApp, route: str) -> ASGIApp:
        """`app` (mounted at `route`) with a server span per HTTP request, continuing the
        request's `traceparent` if it has one."""
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            method = scope["method"]
            with self.tracer.start_as_current_span(
                f"{method} {route}",
                context=extract(headers),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "http.route": route},
                record_exception=False,  # its message may quote the request
                set_status_on_exception=False,
            ) as span:

                async def sending(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        status = int(message["status"])
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            span.set_status(Status(StatusCode.ERROR))
                    await send(message)

                try:
                    await app(scope, receive, sending)
                except BaseException as exc:
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute("error.type", type(exc).__name__)
                    raise

        return traced

    async def shutdown(self) -> None:
        """Exports what is still buffered, then stops the provider."""
        await asyncio.to_thread(self.provider.shutdown)
