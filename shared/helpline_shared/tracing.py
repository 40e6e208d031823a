"""OpenTelemetry tracing: one report is one trace, from intake's HTTP API to metrics.

Off by default. It is on when the SDK is not disabled (`OTEL_SDK_DISABLED`) and an exporter
is named (`OTEL_TRACES_EXPORTER=otlp|console`, comma-separated) or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Off, nothing of
OpenTelemetry is imported and no header is added. On (needs the `otel` extra), each service
gets its own tracer provider, `service.name` = `OTEL_SERVICE_NAME` or `helpline-<service>`;
the SDK reads the other standard variables itself (`OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*`).

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

Spans are exported without exception messages or stack traces (only the exception type),
since those may quote personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

Process = Callable[[Sequence[Any]], Awaitable[None]]


class TracingSettings(BaseSettings):
    """The standard `OTEL_*` variables that decide whether and where spans go."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore", frozen=True)

    sdk_disabled: bool = False
    traces_exporter: str | None = Field(None, description="otlp, console or none; a list.")
    exporter_otlp_endpoint: str | None = None
    exporter_otlp_traces_endpoint: str | None = None
    exporter_otlp_protocol: str | None = None
    exporter_otlp_traces_protocol: str | None = None
    service_name: str | None = None

    def exporters(self) -> list[str]:
        """The exporters to set up; empty means tracing is off."""
        if self.sdk_disabled:
            return []
        if self.traces_exporter is not None:
            names = [n.strip().lower() for n in self.traces_exporter.split(",")]
            return [n for n in names if n and n != "none"]
        if self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint:
            return ["otlp"]
        return []

    def protocol(self) -> str:
        """OTLP protocol: `http/protobuf` (the specification's default) or `grpc`."""
        return self.exporter_otlp_traces_protocol or self.exporter_otlp_protocol or "http/protobuf"


_test_exporter: list[SpanExporter] = []  # set only by `capture_spans`
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


def _exporter(name: str, settings: TracingSettings) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not supported (otlp, console)")
    if settings.protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def _redacting(exporter: SpanExporter) -> SpanExporter:
    """`exporter`, except that exception messages and stack traces are dropped (they may
    quote personal data: what a log line may not hold, a span may not either)."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Status

    def redacted(span: ReadableSpan) -> ReadableSpan:
        events = [
            Event(e.name, {"exception.type": (e.attributes or {}).get("exception.type", "")})
            if e.name == "exception"
            else e
            for e in span.events
        ]
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=Status(span.status.status_code),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    class Redacting(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return exporter.export([redacted(s) for s in spans])

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return exporter.force_flush(timeout_millis)

    return Redacting()


def configure(service: str, settings: TracingSettings | None = None) -> Tracing | None:
    """The service's tracing per the `OTEL_*` variables, or None when tracing is off."""
    settings = settings or TracingSettings()
    names = [] if _test_exporter else settings.exporters()
    if not names and not _test_exporter:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        exporters = [_exporter(n, settings) for n in names]
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("tracing is configured but helpline[otel] is not installed") from exc
    name = settings.service_name or f"helpline-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    for exporter in _test_exporter:
        provider.add_span_processor(SimpleSpanProcessor(_redacting(exporter)))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(_redacting(exporter)))
    return Tracing(service, provider)


@contextlib.contextmanager
def capture_spans() -> Iterator[InMemorySpanExporter]:
    """Test hook: every service configured inside this block traces into the returned
    in-memory exporter, whatever the environment says."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    _test_exporter.append(exporter)
    try:
        yield exporter
    finally:
        _test_exporter.remove(exporter)


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
