"""Tracing: one report is one trace across the four services, on the real broker and
database (the services in this process, spans in memory); off by default, and off adds no
header."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpline_cli.infra import free_port
from helpline_cli.services import FACTORIES
from helpline_shared import tracing
from helpline_shared.db import Database
from helpline_shared.kafka import OutgoingMessage, create_topics, publish_all
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_shared.topics import ESCALATION_OUTCOMES, REPORTS_SUBMITTED, Topic
from helpline_shared.tracing import TracingSettings
from helpline_shared.wiring import ServiceWiring
from tests.conftest import fresh_database
from tests.helpers import every_scope_key, keyed_client, read_topic, serve_simulator
from tests.infra import Infra, dedicated_broker
from tests.intake_support import report

SERVICES = ("intake", "triage", "escalator", "metrics")
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
)


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(
    no_otel_env: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], exporters: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert TracingSettings().exporters() == exporters
    configured = tracing.configure("triage")
    assert (configured is not None) == bool(exporters)
    if configured is not None:
        name = configured.provider.resource.attributes["service.name"]
        assert name == "helpline-triage"


def test_service_name_and_an_unknown_exporter(
    no_otel_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "helpline-triage-eu")
    configured = tracing.configure("triage")
    assert configured is not None
    assert configured.provider.resource.attributes["service.name"] == "helpline-triage-eu"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        tracing.configure("triage")


def test_exported_spans_hold_no_exception_message(no_otel_env: None) -> None:
    with tracing.capture_spans() as exporter:
        traced = tracing.configure("intake")
        assert traced is not None
        with (
            contextlib.suppress(ValueError),
            traced.tracer.start_as_current_span("work"),
        ):
            raise ValueError("reporter r1@school.example")
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert "r1@school.example" not in repr(span.to_json())
    assert [dict(e.attributes or {}) for e in span.events] == [{"exception.type": "ValueError"}]


@pytest.fixture
async def private_topic(topics_settings: Settings) -> str:
    """A topic of this test alone, so no service's consumer in a later test reads it."""
    name = f"helpline.tracing-test.{uuid.uuid4().hex[:8]}"
    await create_topics(topics_settings, [Topic(name, "any", (), (), None, partitions=1)])
    return name


def trace_id_of(headers: Any) -> str | None:
    for name, value in headers or ():
        if name == "traceparent":
            return str(value.decode().split("-")[1])
    return None


async def test_off_by_default_nothing_traced_and_no_traceparent(
    no_otel_env: None, topics_settings: Settings, private_topic: str
) -> None:
    wiring = ServiceWiring(topics_settings, "triage", publishes=[])
    assert wiring.tracing is None
    assert tracing.of(wiring.broker) is None
    assert not any(
        type(m).__name__ == "KafkaTelemetryMiddleware" for m in wiring.broker.middlewares
    )
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    # Even inside someone else's span, an untraced service adds no trace context.
    other = TracerProvider()
    marker = uuid.uuid4().hex
    await wiring.broker.connect()
    try:
        with other.get_tracer("t").start_as_current_span("outside"):
            await publish_all(
                wiring.broker,
                [OutgoingMessage(private_topic, marker.encode(), marker.encode())],
            )
    finally:
        await wiring.broker.stop()
    [record] = await read_topic(
        topics_settings.kafka_bootstrap_servers,
        private_topic,
        keep=lambda r: r.key == marker.encode(),
        expected=1,
    )
    assert trace_id_of(record.headers) is None


async def test_an_outbox_row_keeps_the_trace_of_the_work_that_added_it(
    infra: Infra, topics_settings: Settings, private_topic: str
) -> None:
    with tracing.capture_spans() as spans:
        traced = tracing.configure("escalator")
        assert traced is not None
        wiring = ServiceWiring(topics_settings, "escalator", publishes=[])
    db = Database(await fresh_database(infra, "helpline_tracing"))
    await db.open()
    await wiring.broker.connect()
    try:
        outbox = Outbox(db, wiring.broker, "escalator")
        key = uuid.uuid4().hex.encode()
        with traced.tracer.start_as_current_span("work") as work:
            async with db.pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, [OutgoingMessage(private_topic, b"{}", key)])
        trace_hex = format(work.get_span_context().trace_id, "032x")
        stored = await db.pool.fetchval(
            "SELECT headers->>'traceparent' FROM outbox WHERE key = $1", key
        )
        assert stored.split("-")[1] == trace_hex
        await outbox.relay_once()  # outside any span: the row's context is what it continues
    finally:
        await wiring.broker.stop()
        await db.close()
    [record] = await read_topic(
        topics_settings.kafka_bootstrap_servers,
        private_topic,
        keep=lambda r: r.key == key,
        expected=1,
    )
    assert trace_id_of(record.headers) == trace_hex
    publish = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.PRODUCER]
    assert publish
    assert {s.context.trace_id for s in publish} == {work.get_span_context().trace_id}


async def test_an_untraced_outbox_keeps_no_trace_context(
    no_otel_env: None, infra: Infra, topics_settings: Settings, private_topic: str
) -> None:
    """Off, even a trace context a message brings (one stored while tracing was on) is
    not written: off adds no header."""
    wiring = ServiceWiring(topics_settings, "escalator", publishes=[])
    db = Database(await fresh_database(infra, "helpline_untraced"))
    await db.open()
    try:
        outbox = Outbox(db, wiring.broker, "escalator")
        key = uuid.uuid4().hex.encode()
        brought = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01", "ce_id": "x"}
        async with db.pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, [OutgoingMessage(private_topic, b"{}", key, brought)])
        stored = await db.pool.fetchval("SELECT headers::text FROM outbox WHERE key = $1", key)
    finally:
        await db.close()
    assert json.loads(stored) == {"ce_id": "x"}


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        assert not task.done(), "a service stopped while starting"
        assert time.monotonic() < deadline, "a service did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def wait_ready(urls: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=3) as client:
        for service, url in urls.items():
            while (await client.get(f"{url}/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, f"{service} not ready"
                await asyncio.sleep(0.2)


@dataclass(frozen=True)
class System:
    urls: dict[str, str]
    spans: InMemorySpanExporter
    servers: str
    key: str  # every scope, submitting for the source "tracing"


@pytest.fixture(scope="module")
async def system(infra: Infra, tmp_dir: Path) -> AsyncIterator[System]:
    """The four services in this process, tracing into one in-memory exporter."""
    with (
        dedicated_broker(infra, tmp_dir) as servers,
        tracing.capture_spans() as exporter,
    ):
        async with serve_simulator() as simulator, contextlib.AsyncExitStack() as stack:
            settings = Settings(
                kafka_bootstrap_servers=servers,
                database_url=await fresh_database(infra, "helpline_traced"),
                platform_base_url=simulator,
                escalation_status_interval_s=0.5,
                escalation_poll_interval_s=0.2,
            )
            await create_topics(settings)
            urls = {}
            for service in SERVICES:
                app = FACTORIES[service](settings)
                urls[service] = await stack.enter_async_context(served(app))
            await wait_ready(urls)
            key = await every_scope_key(settings.database_url or "", source="tracing")
            yield System(urls, exporter, servers, key)


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"]).removeprefix("helpline-")


async def trace_reaching_metrics(
    exporter: InMemorySpanExporter, trace_id: int
) -> list[ReadableSpan]:
    """The spans of `trace_id`, once metrics has processed the case's escalation outcome."""
    deadline = time.monotonic() + 90
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        if any(
            service_of(s) == "metrics" and s.name == f"process {ESCALATION_OUTCOMES.name}"
            for s in spans
        ):
            return spans
        seen = sorted({(service_of(s), s.name) for s in spans})
        assert time.monotonic() < deadline, f"trace never reached metrics' outcomes: {seen}"
        await asyncio.sleep(0.3)


async def outcome_record(servers: str, case_id: str, state: str) -> Any:
    """The case's outcome record announcing `state` (a platform worker's, via the outbox)."""
    type_ = f"helpline.escalation.{state}.v1".encode()
    [record] = await read_topic(
        servers,
        ESCALATION_OUTCOMES.name,
        keep=lambda r: r.key == case_id.encode() and ("ce_type", type_) in (r.headers or ()),
        expected=1,
        timeout_s=60,
    )
    return record


async def metrics_span_of(exporter: InMemorySpanExporter, record: Any) -> ReadableSpan:
    """Metrics' span processing `record`, once it has ended."""
    deadline = time.monotonic() + 60
    while True:
        for s in exporter.get_finished_spans():
            attributes = s.attributes or {}
            if (
                service_of(s) == "metrics"
                and s.name == f"process {record.topic}"
                and attributes.get("messaging.destination.partition.id") == str(record.partition)
                and attributes.get("messaging.kafka.offset") == record.offset
            ):
                return s
        assert time.monotonic() < deadline, "metrics never processed the outcome"
        await asyncio.sleep(0.3)


def body(n: int) -> dict[str, Any]:
    # An unknown host: its manual escalation is an outcome written through the outbox.
    return report(
        "tracing",
        f"traced-{n}-{uuid.uuid4().hex[:8]}",
        urls=[f"https://forum.example.org/thread/{n}", "https://youtu.be/dQw4w9WgXcQ"],
    )


@pytest.mark.e2e
async def test_one_report_is_one_trace_through_the_four_services(system: System) -> None:
    async with keyed_client(system.urls["intake"], system.key) as client:
        first = await client.post("/v1/reports", json=body(1))
        second = await client.post("/v1/reports", json=body(2))
    assert first.status_code == second.status_code == 202
    exporter = system.spans
    servers = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert [s.name for s in servers] == ["POST /v1/reports"] * 2
    one, two = (s.context.trace_id for s in servers)
    assert one != two

    for trace_id, response in ((one, first), (two, second)):
        spans = await trace_reaching_metrics(exporter, trace_id)
        assert {service_of(s) for s in spans} == set(SERVICES)
        records = {(service_of(s), s.name) for s in spans if s.name.startswith("process ")}
        assert records >= {
            ("intake", "process helpline.reports.submitted"),
            ("triage", "process helpline.cases.opened"),
            ("escalator", "process helpline.cases.triaged"),
            ("metrics", "process helpline.cases.triaged"),
            ("metrics", "process helpline.escalations.outcomes"),
        }
        case_key = response.json()["case_id"]
        published = {s.attributes.get("messaging.kafka.message.key") for s in spans}
        assert case_key.encode() in published or case_key in published

        # The YouTube URL's decision is added later by its platform worker, outside the
        # case's processing (one escalation shared by both cases, one event per case): it
        # continues each case's own trace from its link, into metrics.
        record = await outcome_record(system.servers, case_key, "decided")
        assert trace_id_of(record.headers) == format(trace_id, "032x")
        span = await metrics_span_of(exporter, record)
        assert span.context.trace_id == trace_id

    # Per record, not per batch: nothing published for the second case is in the first trace.
    key_two = second.json()["case_id"]
    assert not any(
        s.attributes.get("messaging.kafka.message.key") in (key_two, key_two.encode())
        for s in exporter.get_finished_spans()
        if s.context.trace_id == one
    )


@pytest.mark.e2e
async def test_a_traceparent_sent_by_a_publisher_is_continued(system: System) -> None:
    with TracerProvider().get_tracer("partner").start_as_current_span("publish") as span:
        parent = span.get_span_context()
    data = body(3)
    traceparent = f"00-{parent.trace_id:032x}-{parent.span_id:016x}-01"
    producer = AIOKafkaProducer(bootstrap_servers=system.servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            REPORTS_SUBMITTED.name,
            json.dumps(data).encode(),
            key=data["report_id"].encode(),
            headers=[("traceparent", traceparent.encode())],
        )
    finally:
        await producer.stop()
    spans = await trace_reaching_metrics(system.spans, parent.trace_id)
    assert {service_of(s) for s in spans} == set(SERVICES)
    [intake] = [s for s in spans if s.name == f"process {REPORTS_SUBMITTED.name}"]
    assert intake.parent is not None
    assert intake.parent.span_id == parent.span_id
