"""Every service's `/metrics` passes `promtool check metrics`, and a real Prometheus
(Debian's `prometheus`) scrapes all four services and answers a query with the totals."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry, generate_latest

from helpline_cli.infra import free_port
from helpline_cli.stack import Stack
from helpline_metrics.prometheus import TotalsCollector
from helpline_shared.observability import ServiceMetrics
from helpline_shared.topics import REPORTS_SUBMITTED
from tests.helpers import every_scope_key, keyed_client
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import _stack, make_report, wait_until

pytestmark = pytest.mark.e2e

SERVICES = ("intake", "triage", "escalator", "metrics")
REPORTS = 6


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is required in CI (Debian's prometheus package)")
        pytest.skip(f"{binary} not installed (Debian's prometheus package)")
    return path


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        async for s in _stack(infra, servers, tmp_dir):
            yield s


async def publish_reports(stack: Stack, n: int, seed: int) -> None:
    """Publish `n` reports as an outside system would and wait until metrics counted them."""
    rng = random.Random(seed)
    reports = [make_report(10_000 + seed * 100 + i, rng) for i in range(n)]
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for r in reports:
            await producer.send_and_wait(
                REPORTS_SUBMITTED.name, json.dumps(r).encode(), key=r["report_id"].encode()
            )
    finally:
        await producer.stop()


async def totals(stack: Stack) -> dict[str, Any]:
    key = await every_scope_key(stack.settings.database_url or "")
    async with keyed_client(key=key) as client:
        r = await client.get(f"{stack.url('metrics')}/v1/totals")
        r.raise_for_status()
        return dict(r.json())


async def test_every_service_metrics_pass_promtool_and_prometheus_scrapes_them(
    stack: Stack, tmp_path: Path
) -> None:
    promtool, prometheus = _need("promtool"), _need("prometheus")
    await stack.wait_ready(SERVICES)
    await publish_reports(stack, REPORTS, seed=1)

    async def counted() -> tuple[bool, Any]:
        t = await totals(stack)
        return t["cases"] == REPORTS and t["escalations"]["total"] > 0, t["cases"]

    await wait_until(counted, 60, "metrics to count the reports")

    async with httpx.AsyncClient() as client:
        for service in SERVICES:
            text = (await client.get(f"{stack.url(service)}/metrics")).text
            assert "helpline_batch_processing_seconds_bucket" in text, service
            assert f'helpline_consumer_lag{{partition="0",service="{service}"' in text, service
            lint = await asyncio.create_subprocess_exec(
                promtool,
                "check",
                "metrics",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await lint.communicate(text.encode())
            assert lint.returncode == 0, (service, out.decode())
            assert not out.strip(), (service, out.decode())
    metrics_text = await client_get(stack, "metrics")
    assert "# TYPE helpline_cases_total counter" in metrics_text
    assert f"helpline_cases_total {float(REPORTS)}" in metrics_text
    assert 'helpline_escalations{platform="tiktok",state=' in metrics_text

    port = free_port()
    config = tmp_path / "prometheus.yml"
    targets = [f"127.0.0.1:{stack.port(s)}" for s in SERVICES]
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: helpline\n"
        f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
    )
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    api = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def query(expr: str) -> list[dict[str, Any]]:
                r = await client.get(api, params={"query": expr})
                r.raise_for_status()
                return list(r.json()["data"]["result"])

            async def all_up() -> tuple[bool, Any]:
                try:
                    up = {s["metric"]["instance"]: s["value"][1] for s in await query("up")}
                except httpx.HTTPError as exc:
                    return False, repr(exc)
                return up == {t: "1" for t in targets}, up

            await wait_until(all_up, 30, "Prometheus to scrape all four services")

            await publish_reports(stack, 2, seed=2)
            expected = REPORTS + 2
            await wait_until(counted_as(stack, expected), 60, "metrics to count two more")

            async def answered() -> tuple[bool, Any]:
                result = await query("helpline_cases_total")
                values = [float(s["value"][1]) for s in result]
                return values == [float(expected)], values

            await wait_until(answered, 20, "Prometheus to answer helpline_cases_total")

            async def caught_up() -> tuple[bool, Any]:
                lag = await query("sum by (service) (helpline_consumer_lag)")
                seen = {s["metric"]["service"]: float(s["value"][1]) for s in lag}
                return seen == dict.fromkeys(SERVICES, 0.0), seen

            await wait_until(caught_up, 20, "every service's consumer lag to reach 0")
            batches = await query("sum by (service) (helpline_batch_processing_seconds_count)")
            assert {s["metric"]["service"] for s in batches} == set(SERVICES)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)


async def client_get(stack: Stack, service: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{stack.url(service)}/metrics")).text


def counted_as(stack: Stack, n: int) -> Any:
    async def check() -> tuple[bool, Any]:
        t = await totals(stack)
        return t["cases"] == n, t["cases"]

    return check


async def test_every_stored_total_renders_under_conventional_names() -> None:
    """Known totals get their names, kinds and labels; an unknown one a gauge named after it
    with the label after its last `_by_`; promtool accepts the whole text."""
    promtool = _need("promtool")
    stored = {
        "cases_total": {"": 5},
        "cases_by_platform": {"tiktok": 4, "youtube": 1},
        "cases_by_harm_type": {"bullying": 3},
        "escalations_total": {"": 3},
        "escalations_by_state": {"decided": 2, "submitted": 1},
        "escalations_by_platform_state": {"tiktok:decided": 2, "youtube:submitted": 1},
        "decision_seconds": {"tiktok": 7200},
        "url_reports_by_state": {"decided": 4},
        "breaches_total": {"": 1},
        "appeals_by_outcome": {"upheld": 2},
    }
    registry = CollectorRegistry()
    registry.register(TotalsCollector(stored))
    text = generate_latest(registry).decode()
    lines = set(text.splitlines())
    for line in (
        "# TYPE helpline_cases_total counter",
        "helpline_cases_total 5.0",
        'helpline_cases_by_platform_total{platform="youtube"} 1.0',
        'helpline_cases_by_harm_type_total{harm_type="bullying"} 3.0',
        "# TYPE helpline_escalations gauge",
        'helpline_escalations{platform="tiktok",state="decided"} 2.0',
        "helpline_escalations_total 3.0",
        'helpline_decision_wait_seconds_total{platform="tiktok"} 7200.0',
        'helpline_url_reports{state="decided"} 4.0',
        "# TYPE helpline_breaches gauge",
        "helpline_breaches 1.0",
        'helpline_appeals_by_outcome{outcome="upheld"} 2.0',
    ):
        assert line in lines, (line, text)
    assert "escalations_by_state" not in text
    lint = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await lint.communicate(text.encode())
    assert lint.returncode == 0, out.decode()
    assert not out.strip(), out.decode()


async def test_consumer_lag_is_end_offset_minus_committed(infra: Infra) -> None:
    """On the real broker: 5 records, nothing committed, lag 5; committed 3, lag 2; all, 0."""
    topic = f"helpline.test.lag-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"r{i}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.bootstrap_servers,
        group_id=f"lag-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen = 0
        for _ in range(40):
            batches = await consumer.getmany(timeout_ms=500)
            seen += sum(len(b) for b in batches.values())
            if seen >= 5:
                break
        assert seen == 5
        observed = ServiceMetrics("lagtest")
        observed.consumer_lag(SimpleNamespace(subscribers=[SimpleNamespace(consumer=consumer)]))
        _, app = observed.route()
        line = f'helpline_consumer_lag{{partition="0",service="lagtest",topic="{topic}"}}'

        async def lag() -> float:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                text = (await client.get("/metrics")).text
            return float(next(x for x in text.splitlines() if x.startswith(line)).split()[-1])

        assert await lag() == 5
        tp = TopicPartition(topic, 0)
        await consumer.commit({tp: 3})
        assert await lag() == 2
        await consumer.commit({tp: 5})
        assert await lag() == 0
    finally:
        await consumer.stop()
