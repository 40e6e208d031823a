"""The registry's topics on a running cluster: create the missing ones, report any drift.

:func:`create_topics` creates each missing topic with the registry's partitions,
replication and configs (`retention.ms`, `cleanup.policy`, `min.insync.replicas`); a topic
that exists is left alone, so running it again changes nothing. :func:`check_topics`
compares the cluster with the registry and returns one :class:`Drift` per difference
(missing topic, partition count, replication, a config value) and, separately, the settings
the broker did not report: those are unknown, not matching.

Brokers differ in what they report. Apache Kafka describes every config (defaults too).
Tansu (the embedded broker) describes only the configs given when the topic was created,
closes the connection on a DescribeConfigs request naming configs (so all are requested
and filtered here), and has neither AlterConfigs nor CreatePartitions: drift is fixed with
the cluster's own tools (`kafka-configs.sh`, `kafka-topics.sh --alter`, a Strimzi
`KafkaTopic`), never by this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from helpline_shared.kafka import client_kwargs
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings
from helpline_shared.topics import ALL_TOPICS, Topic

log = get_logger("helpline.topics")


@dataclass(frozen=True)
class TopicSpec:
    """What the registry asks of one topic in this deployment."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


@dataclass(frozen=True)
class ObservedTopic:
    """What the broker reported of one topic; a config it did not report is absent."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


@dataclass(frozen=True)
class Drift:
    """One difference between the registry and the cluster."""

    topic: str
    setting: str  # "topic", "partitions", "replication" or a config name
    expected: str
    found: str | None  # None: the topic is missing

    def __str__(self) -> str:
        if self.found is None:
            return f"{self.topic}: missing (registry: partitions={self.expected})"
        direction = ""
        if self.setting in ("partitions", "replication"):
            lower = int(self.found) < int(self.expected)
            direction = " (lower)" if lower else " (higher)"
        return (
            f"{self.topic}: {self.setting} is {self.found}, "
            f"registry says {self.expected}{direction}"
        )


def spec(topic: Topic, settings: Settings) -> TopicSpec:
    """The registry's settings of `topic`, with the deployment's defaults filled in."""
    replication = topic.replication or settings.kafka_replication_factor
    min_insync = topic.min_insync_replicas or max(1, replication - 1)
    return TopicSpec(
        topic.name,
        partitions=topic.partitions or settings.kafka_topic_partitions,
        replication=replication,
        configs={
            "retention.ms": str(topic.retention_ms),
            "cleanup.policy": topic.cleanup_policy,
            "min.insync.replicas": str(min_insync),
        },
    )


def _same(name: str, expected: str, found: str) -> bool:
    if name == "cleanup.policy":  # a list: "compact,delete" == "delete, compact"
        return {p.strip() for p in expected.split(",")} == {p.strip() for p in found.split(",")}
    try:
        return int(expected) == int(found)
    except ValueError:
        return expected.strip() == found.strip()


def compare(
    specs: Iterable[TopicSpec], observed: Mapping[str, ObservedTopic]
) -> tuple[list[Drift], list[tuple[str, str]]]:
    """The drifts between `specs` and the cluster, and the `(topic, setting)` pairs the
    broker did not report (neither matching nor drifting: unknown)."""
    drifts: list[Drift] = []
    unreported: list[tuple[str, str]] = []
    for want in specs:
        have = observed.get(want.name)
        if have is None:
            drifts.append(Drift(want.name, "topic", str(want.partitions), None))
            continue
        if have.partitions != want.partitions:
            drifts.append(
                Drift(want.name, "partitions", str(want.partitions), str(have.partitions))
            )
        if have.replication != want.replication:
            drifts.append(
                Drift(want.name, "replication", str(want.replication), str(have.replication))
            )
        for name, value in want.configs.items():
            found = have.configs.get(name)
            if found is None:
                unreported.append((want.name, name))
            elif not _same(name, value, found):
                drifts.append(Drift(want.name, name, value, found))
    return drifts, unreported


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**client_kwargs(settings, "admin"))
    await admin.start()
    return admin


async def create_topics(settings: Settings, topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create the registry's missing topics with their settings; existing ones are left
    alone (see :func:`check_topics` for their drift). Returns the names created."""
    admin = await _admin(settings)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        for topic in topics:
            if topic.name in existing:
                continue
            want = spec(topic, settings)
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            want.name,
                            num_partitions=want.partitions,
                            replication_factor=want.replication,
                            topic_configs=want.configs,
                        )
                    ]
                )
            except TopicAlreadyExistsError:
                continue
            created.append(topic.name)
            log.info("topic created", topic=topic.name, partitions=want.partitions)
    finally:
        await admin.close()
    return created


def _configs(responses: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Config values per topic from DescribeConfigs responses (any version)."""
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, _message, _type, name, entries, *_ in response.resources:
            if error_code == 0:
                out[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return out


async def describe(settings: Settings, names: Iterable[str]) -> dict[str, ObservedTopic]:
    """What the broker reports of the topics among `names` that exist."""
    admin = await _admin(settings)
    try:
        existing = sorted(set(await admin.list_topics()) & set(names))
        if not existing:
            return {}
        metadata = await admin.describe_topics(existing)
        configs = _configs(
            await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in existing]
            )
        )
    finally:
        await admin.close()
    observed: dict[str, ObservedTopic] = {}
    for entry in metadata:
        if entry["error_code"] != 0:
            continue
        partitions = entry["partitions"]
        observed[entry["topic"]] = ObservedTopic(
            entry["topic"],
            partitions=len(partitions),
            replication=min((len(p["replicas"]) for p in partitions), default=0),
            configs=configs.get(entry["topic"], {}),
        )
    return observed


async def check_topics(
    settings: Settings, topics: Iterable[Topic] = ALL_TOPICS
) -> tuple[list[Drift], list[tuple[str, str]]]:
    """Compare the running cluster with the registry: see :func:`compare`."""
    specs = [spec(t, settings) for t in topics]
    return compare(specs, await describe(settings, [s.name for s in specs]))
