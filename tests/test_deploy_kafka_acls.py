"""The Kafka ACLs follow the topic registry: a service writes only what it produces and reads
only what it consumes; the generated Strimzi files and the README's table say the same."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from helpline_shared.topics import ALL_TOPICS, ESCALATION_OUTCOMES, SERVICES

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


kafka_acls = _load("kafka_acls")


def _topics(who: str, operation: str) -> set[str]:
    return {
        rule.name
        for rule in kafka_acls.acls(who)
        if rule.type == "topic" and operation in rule.operations
    }


def test_services_write_what_they_produce_and_read_what_they_consume() -> None:
    for service in SERVICES:
        produced = {t.name for t in ALL_TOPICS if any(p.startswith(service) for p in t.producers)}
        consumed = {t.name for t in ALL_TOPICS if service in t.consumers}
        assert _topics(service, "Write") == produced, service
        assert _topics(service, "Read") == consumed, service
        groups = {r.name for r in kafka_acls.acls(service) if r.type == "group"}
        assert groups == {f"helpline-{service}"}
        assert all(r.pattern == "literal" for r in kafka_acls.acls(service))


def test_only_the_escalator_may_write_outcomes() -> None:
    """The forged-outcome attack of issue 10: no workload but the escalator has Write on the
    topic. The operator's break-glass principal may, to re-drive metrics' dead letters."""
    writers = {
        who for who in kafka_acls.PRINCIPALS if ESCALATION_OUTCOMES.name in _topics(who, "Write")
    }
    assert writers == {"escalator", "operator"}
    assert _topics("external", "Write") == {"helpline.reports.submitted"}


def test_a_registry_change_changes_the_acls() -> None:
    forged = replace(ESCALATION_OUTCOMES, producers=("escalator", "triage"))
    topics = tuple(forged if t is ESCALATION_OUTCOMES else t for t in ALL_TOPICS)
    writes = {r.name for r in kafka_acls.acls("triage", topics) if "Write" in r.operations}
    assert ESCALATION_OUTCOMES.name in writes
    assert ESCALATION_OUTCOMES.name not in _topics("triage", "Write")


def test_generated_strimzi_files_match_the_registry() -> None:
    for path, text in kafka_acls.generated().items():
        assert path.read_text() == text, (
            f"{path.relative_to(ROOT)} is stale: run `python deploy/kafka_acls.py`"
        )


def test_readme_topic_table_is_the_acl_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Topics\n", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|")) + "\n"
    assert table == kafka_acls.acl_table(), "run `python deploy/kafka_acls.py --table`"
    outcomes_readers = (
        r"`helpline-casework`, `helpline-external`, `helpline-metrics`, `helpline-notify`"
    )
    assert re.search(r"`helpline-escalator` \| " + outcomes_readers, table)
