"""Every kustomize variant renders, validates against the Kubernetes (and CRD) schemas, and
holds what operations relies on: disruption budgets, sized containers, default-deny network
access, a Kafka principal per workload in production, and no simulator outside dev."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


validate = _load("validate")
Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Docs]:
    return {str(v): validate.render(v) for v in validate.variants()}


def _kind(docs: Docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_variant_is_valid(rendered: dict[str, Docs]) -> None:
    assert set(rendered) >= {
        "dev",
        "production",
        "dev+keda",
        "production+keda",
        "production+strimzi-topics",
    }
    for name, docs in rendered.items():
        assert list(validate.problems(docs)) == [], name


def test_an_invalid_manifest_is_refused(rendered: dict[str, Docs]) -> None:
    intake = _kind(rendered["dev"], "Deployment")["helpline-intake"]
    assert list(validate.problems([intake])) == []
    wrong_type, unknown_field = copy.deepcopy(intake), copy.deepcopy(intake)
    wrong_type["spec"]["replicas"] = "two"
    container = unknown_field["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolcy"] = "Always"  # strict: unknown fields are errors
    found = list(validate.problems([wrong_type, unknown_field]))
    assert any("spec/replicas" in p and "'two'" in p for p in found), found
    assert any("imagePullPolcy" in p for p in found), found
    assert list(validate.problems([{"apiVersion": "example.com/v1", "kind": "Nope"}]))


def test_an_invalid_custom_resource_is_refused(rendered: dict[str, Docs]) -> None:
    intake = copy.deepcopy(_kind(rendered["production"], "KafkaUser")["helpline-intake"])
    intake["spec"]["authorization"]["acls"][0]["operations"] = ["Wrte"]
    del intake["metadata"]["labels"]["strimzi.io/cluster"]
    found = list(validate.problems([intake]))
    assert any("Wrte" in p for p in found), found
    assert any("strimzi.io/cluster" in p for p in found), found
    scaled = copy.deepcopy(_kind(rendered["dev+keda"], "ScaledObject")["helpline-triage"])
    del scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    assert list(validate.problems([scaled]))


def test_a_broken_overlay_fails_to_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing-deployment.yaml]\n")
    with pytest.raises(validate.subprocess.CalledProcessError):
        validate.render_dir(tmp_path)


def test_each_deployment_has_a_budget_and_measured_resources(rendered: dict[str, Docs]) -> None:
    for name, docs in rendered.items():
        budgets = _kind(docs, "PodDisruptionBudget")
        for deployment in _kind(docs, "Deployment").values():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            component = labels["app.kubernetes.io/component"]
            matching = [
                b
                for b in budgets.values()
                if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
            ]
            assert len(matching) == 1, (name, component)
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                resources = container["resources"]
                assert {"cpu", "memory"} <= resources["requests"].keys(), component
                assert {"cpu", "memory"} <= resources["limits"].keys(), component


def _allows(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        found = labels.get(expression["key"]) in expression["values"]
        if found != (expression["operator"] == "In"):
            return False
    return True


def _egress_ports(docs: Docs, labels: dict[str, str]) -> set[int]:
    ports: set[int] = set()
    for policy in _kind(docs, "NetworkPolicy").values():
        if _allows(policy, labels):
            for rule in policy["spec"].get("egress", []):
                ports |= {p["port"] for p in rule.get("ports", [])}
    return ports


def test_network_access_is_denied_unless_needed(rendered: dict[str, Docs]) -> None:
    for name in ("dev", "production"):
        docs = rendered[name]
        policies = _kind(docs, "NetworkPolicy")
        deny = policies["helpline-default-deny"]["spec"]
        assert deny["podSelector"] == {}
        assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny
        assert "egress" not in deny
        broker = 9093 if name == "production" else 9092
        for component in ("intake", "triage", "escalator", "metrics"):
            labels = {
                "app.kubernetes.io/name": "helpline",
                "app.kubernetes.io/component": component,
            }
            ports = _egress_ports(docs, labels)
            assert {53, broker, 5432} <= ports, (name, component)
            assert (443 in ports) == (component == "escalator"), (name, component)
            assert {4317, 4318} <= ports, (name, component)  # traces, when switched on
    simulator = {"app.kubernetes.io/name": "helpline", "app.kubernetes.io/component": "simulator"}
    assert not {9092, 9093, 5432} & _egress_ports(rendered["dev"], simulator)
    production = _kind(rendered["production"], "NetworkPolicy")
    kafka = production["helpline-egress-kafka"]["spec"]["egress"]
    assert all(rule.get("to") for rule in kafka)  # narrowed to the Strimzi brokers


def test_simulator_exists_only_in_dev(rendered: dict[str, Docs]) -> None:
    base = validate.render_dir(validate.DEPLOY / "base")
    for name, docs in [("base", base), *rendered.items()]:
        text = yaml.safe_dump_all(docs)
        assert ("simulator" in text.replace("HELPLINE_SIMULATOR_PORT", "")) == name.startswith(
            "dev"
        ), name


def test_production_workloads_use_their_own_kafka_principal(rendered: dict[str, Docs]) -> None:
    docs = rendered["production"]
    users = _kind(docs, "KafkaUser")
    config = _kind(docs, "ConfigMap")["helpline-config"]["data"]
    assert config["HELPLINE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "HELPLINE_KAFKA_SASL_USERNAME" not in config
    workloads = [*_kind(docs, "Deployment").values(), *_kind(docs, "Job").values()]
    assert len(workloads) == 5
    for workload in workloads:
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        user = env["HELPLINE_KAFKA_SASL_USERNAME"]["value"]
        assert user == workload["metadata"]["name"]
        assert user in users
        secret = env["HELPLINE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": user, "key": "password"}


def test_keda_never_scales_past_the_partitions(rendered: dict[str, Docs]) -> None:
    for name in ("dev+keda", "production+keda"):
        docs = rendered[name]
        partitions = int(
            _kind(docs, "ConfigMap")["helpline-config"]["data"]["HELPLINE_KAFKA_TOPIC_PARTITIONS"]
        )
        scaled = _kind(docs, "ScaledObject")
        assert set(scaled) == {
            f"helpline-{s}" for s in ("intake", "triage", "escalator", "metrics")
        }
        for obj in scaled.values():
            if name.startswith("production"):
                assert obj["spec"]["maxReplicaCount"] <= partitions, obj["metadata"]["name"]
            for trigger in obj["spec"]["triggers"]:
                assert trigger["metadata"]["consumerGroup"] == obj["metadata"]["name"]
                assert trigger["metadata"]["allowIdleConsumers"] == "false"


def _secrets_read(workload: dict[str, Any]) -> set[str]:
    pod = workload["spec"]["template"]["spec"]
    names: set[str] = set()
    for container in pod["containers"]:
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
    return names


def test_only_the_escalator_holds_the_platforms_api_keys(rendered: dict[str, Docs]) -> None:
    for name, docs in rendered.items():
        workloads = [*_kind(docs, "Deployment").values(), *_kind(docs, "Job").values()]
        simulator = _kind(docs, "Deployment").get("helpline-simulator")
        if simulator is not None:  # it needs neither the database nor Kafka
            assert _secrets_read(simulator) == set(), name
        holders = {
            w["metadata"]["name"] for w in workloads if "helpline-platforms" in _secrets_read(w)
        }
        assert holders == {"helpline-escalator"}, name


def test_keda_scales_each_consumer_on_every_topic_it_reads(rendered: dict[str, Docs]) -> None:
    """A ScaledObject watches the lag of exactly the topics the registry says its service
    consumes, so a topic added to a service in the registry cannot be left unwatched."""
    from helpline_shared.topics import ALL_TOPICS, SERVICES

    for name in ("dev+keda", "production+keda"):
        scaled = _kind(rendered[name], "ScaledObject")
        for service in SERVICES:
            consumed = {t.name for t in ALL_TOPICS if service in t.consumers}
            triggers = scaled[f"helpline-{service}"]["spec"]["triggers"]
            assert {t["metadata"]["topic"] for t in triggers} == consumed, (name, service)
            assert len(triggers) == len(consumed), (name, service)


def test_keda_reads_only_the_password_from_the_user_operators_secret(
    rendered: dict[str, Docs],
) -> None:
    """Strimzi's User Operator makes and owns the Secret of each KafkaUser: KEDA takes its
    password from there and nothing else, so no one has to write keys into that Secret."""
    docs = rendered["production+keda"]
    users = _kind(docs, "KafkaUser")
    (auth,) = _kind(docs, "TriggerAuthentication").values()
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["password"] == ("helpline-keda", "password")
    assert "helpline-keda" in users
    assert [p for p, (name, _) in refs.items() if name in users] == ["password"]
    assert refs["ca"] == ("helpline-kafka-ca", "ca.crt")  # the CA the workloads mount
