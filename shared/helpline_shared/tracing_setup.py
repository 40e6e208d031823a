"""Where spans go, from the standard `OTEL_*` variables; the test hook that captures them.

Tracing is on when the SDK is not disabled (`OTEL_SDK_DISABLED`) and an exporter is named
(`OTEL_TRACES_EXPORTER=otlp|console`, comma-separated) or an OTLP endpoint is set
(`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). The SDK and the
exporters read their other standard variables themselves (`OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_*`: headers, timeout, TLS).

Spans are exported without exception messages or stack traces (only the exception type):
those may quote personal data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


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


def tracer_provider(service: str, settings: TracingSettings | None = None) -> TracerProvider | None:
    """The service's tracer provider per the `OTEL_*` variables, or None when tracing is
    off. `service.name` is `OTEL_SERVICE_NAME`, else `helpline-<service>`."""
    settings = settings or TracingSettings()
    names = [] if _test_exporter else settings.exporters()  # the test hook replaces them
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
    return provider


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
