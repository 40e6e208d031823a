"""Topics as configuration: the registry's settings, `topics create` applying them, and
`topics check` reporting drift (logic on described configs as data; the real thing on Tansu)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from helpline_cli.topics_cli import report
from helpline_shared.settings import Settings
from helpline_shared.topic_admin import (
    ObservedTopic,
    TopicSpec,
    check_topics,
    compare,
    create_topics,
    spec,
)
from helpline_shared.topics import ALL_TOPICS, CASES_OPENED, DEAD_LETTERS, REPORTS_REJECTED
from tests.infra import tansu

# The topics metrics rebuilds its counts from, and triage's input: kept forever.
KEPT = (
    "helpline.reports.rejected",
    "helpline.cases.triaged",
    "helpline.escalations.outcomes",
    "helpline.cases.opened",
    "helpline.escalations.activity",  # casework rebuilds its timelines from it
    "helpline.practitioner.commands",  # the audit trail of who did what
)
WEEK_MS = 7 * 24 * 3600 * 1000


def by_name(name: str) -> TopicSpec:
    return spec(next(t for t in ALL_TOPICS if t.name == name), Settings())


def test_the_topics_metrics_rebuilds_from_are_never_deleted_by_age() -> None:
    for name in KEPT:
        assert by_name(name).configs["retention.ms"] == "-1", name
    bounded = [t.name for t in ALL_TOPICS if t.name not in KEPT]
    assert bounded  # the rest (reporters' submissions, dead letters) expire
    assert all(int(by_name(n).configs["retention.ms"]) > 0 for n in bounded)


def test_every_topic_has_a_cleanup_policy_and_in_sync_minimum() -> None:
    for topic in ALL_TOPICS:
        configs = spec(topic, Settings()).configs
        assert configs["cleanup.policy"] == "delete"  # events: compaction would lose history
        assert int(configs["min.insync.replicas"]) >= 1


def test_deployment_defaults_fill_what_the_registry_leaves_open() -> None:
    three = spec(CASES_OPENED, Settings(kafka_replication_factor=3, kafka_topic_partitions=12))
    assert (three.partitions, three.replication) == (12, 3)
    assert three.configs["min.insync.replicas"] == "2"  # survives losing one replica
    one = spec(CASES_OPENED, Settings(kafka_replication_factor=1))
    assert one.configs["min.insync.replicas"] == "1"
    dlq = spec(DEAD_LETTERS["triage"], Settings(kafka_topic_partitions=12))
    assert dlq.partitions == 1  # the registry's own value wins


def observed(want: TopicSpec, **changes: object) -> ObservedTopic:
    fields: dict[str, object] = {
        "name": want.name,
        "partitions": want.partitions,
        "replication": want.replication,
        "configs": dict(want.configs),
    }
    fields.update(changes)
    return ObservedTopic(**fields)  # type: ignore[arg-type]


def test_compare_finds_each_kind_of_drift_and_nothing_else() -> None:
    opened = by_name("helpline.cases.opened")
    rejected = by_name("helpline.reports.rejected")
    triaged = by_name("helpline.cases.triaged")
    dlq = spec(DEAD_LETTERS["intake"], Settings())
    cluster = {
        opened.name: observed(
            opened, partitions=2, configs={**opened.configs, "retention.ms": str(WEEK_MS)}
        ),
        rejected.name: observed(rejected, partitions=5, replication=2),
        dlq.name: observed(dlq, configs={}),  # a broker that reports no configs
    }
    drifts, unreported = compare([opened, rejected, triaged, dlq], cluster)
    lines = [str(d) for d in drifts]
    assert lines == [
        f"{opened.name}: partitions is 2, registry says 3 (lower)",
        f"{opened.name}: retention.ms is {WEEK_MS}, registry says -1",
        f"{rejected.name}: partitions is 5, registry says 3 (higher)",
        f"{rejected.name}: replication is 2, registry says 1 (higher)",
        f"{triaged.name}: missing (registry: partitions=3)",
    ]
    assert unreported == [
        (dlq.name, "retention.ms"),
        (dlq.name, "cleanup.policy"),
        (dlq.name, "min.insync.replicas"),
    ]


def test_compare_reads_values_as_the_broker_writes_them() -> None:
    want = TopicSpec("t", 3, 1, {"cleanup.policy": "compact,delete", "retention.ms": "-1"})
    same = observed(want, configs={"cleanup.policy": "delete, compact", "retention.ms": "-01"})
    assert compare([want], {"t": same}) == ([], [])
    other = observed(want, configs={"cleanup.policy": "compact", "retention.ms": "-1"})
    assert [d.setting for d in compare([want], {"t": other})[0]] == ["cleanup.policy"]


def test_the_report_fails_on_drift_and_says_what_was_not_checked() -> None:
    want = by_name(KEPT[0])
    drifts, unreported = compare([want], {want.name: observed(want, configs={})})
    lines, code = report(drifts, unreported, 1, strict=False)
    assert code == 0
    assert lines[0] == (
        f"{want.name}: retention.ms, cleanup.policy, min.insync.replicas not reported by the broker"
    )
    assert "3 setting(s) not reported by the broker, so not checked" in lines[-1]
    assert report(drifts, unreported, 1, strict=True)[1] == 1
    drifts, unreported = compare([want], {})
    lines, code = report(drifts, unreported, 1, strict=False)
    assert (code, lines[-1]) == (1, "1 topic(s) checked: 1 drift(s)")


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[str]:
    with tansu(tmp_path) as servers:
        yield servers


async def helpline(servers: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "helpline"),
        *args,
        env={**os.environ, "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_created_topics_match_the_registry_on_tansu(fresh_broker: str) -> None:
    settings = Settings(kafka_bootstrap_servers=fresh_broker)
    assert sorted(await create_topics(settings)) == sorted(t.name for t in ALL_TOPICS)
    assert await create_topics(settings) == []  # idempotent: only missing topics
    assert await check_topics(settings) == ([], [])  # Tansu reports what it was given
    code, out = await helpline(fresh_broker, "topics", "check")
    assert code == 0, out
    assert out.strip() == f"{len(ALL_TOPICS)} topic(s) checked: 0 drift(s)"


async def test_check_reports_drift_on_a_running_cluster(fresh_broker: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=fresh_broker)
    await admin.start()
    try:  # made by hand before the registry had settings, or by someone else
        await admin.create_topics(
            [
                NewTopic(CASES_OPENED.name, 2, 1, topic_configs={"retention.ms": str(WEEK_MS)}),
                NewTopic(REPORTS_REJECTED.name, 3, 1),  # no configs: Tansu reports none
            ]
        )
    finally:
        await admin.close()
    settings = Settings(kafka_bootstrap_servers=fresh_broker)
    created = await create_topics(
        settings, [t for t in ALL_TOPICS if t is not DEAD_LETTERS["metrics"]]
    )
    assert CASES_OPENED.name not in created  # existing topics are left alone
    assert REPORTS_REJECTED.name not in created

    code, out = await helpline(fresh_broker, "topics", "check")
    assert code == 1
    assert out.splitlines() == [
        f"{CASES_OPENED.name}: partitions is 2, registry says 3 (lower)",
        f"{CASES_OPENED.name}: retention.ms is {WEEK_MS}, registry says -1",
        "helpline.metrics.dlq: missing (registry: partitions=1)",
        f"{REPORTS_REJECTED.name}: retention.ms, cleanup.policy, min.insync.replicas "
        "not reported by the broker",
        f"{CASES_OPENED.name}: cleanup.policy, min.insync.replicas not reported by the broker",
        f"{len(ALL_TOPICS)} topic(s) checked: 3 drift(s); "
        "5 setting(s) not reported by the broker, so not checked",
    ]
    code, _ = await helpline(fresh_broker, "topics", "create")
    assert code == 0
    code, out = await helpline(fresh_broker, "topics", "check")
    assert code == 1  # the hand-made topics still drift
    assert "helpline.metrics.dlq" not in out  # created


async def test_check_says_when_it_cannot_ask_the_cluster(tmp_path: Path) -> None:
    """No broker: not "no drift" (0) nor "drift" (1), but one line and exit 2."""
    with tansu(tmp_path) as servers:
        pass  # a broker that was there and is gone: nothing listens on its port
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "helpline"),
        "topics",
        "check",
        env={**os.environ, "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2, (out, err)
    lines = [line for line in err.decode().splitlines() if "topics check:" in line]
    assert lines == [lines[0]]
    assert lines[0].startswith(f"topics check: cannot ask the brokers at {servers}: ")
    assert "Traceback" not in err.decode()
