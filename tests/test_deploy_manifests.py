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

from helpline_shared.settings import Settings
from helpline_shared.topics import ALL_TOPICS, SERVICES

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


SMTP = {25, 465, 587}  # the relay: plain, implicit TLS, STARTTLS


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
        for component in SERVICES:
            labels = {
                "app.kubernetes.io/name": "helpline",
                "app.kubernetes.io/component": component,
            }
            ports = _egress_ports(docs, labels)
            assert {53, broker, 5432} <= ports, (name, component)
            # HTTPS out: the escalator to the platforms, notify to the alert webhook.
            assert (443 in ports) == (component in ("escalator", "notify")), (name, component)
            assert bool(SMTP & ports) == (component == "notify"), (name, component)
            if component == "notify":
                assert ports >= SMTP, name
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
    assert len(workloads) == len(SERVICES) + 1  # and the init Job
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
        consumers = {s for s in SERVICES if any(s in t.consumers for t in ALL_TOPICS)}
        assert set(scaled) == {f"helpline-{s}" for s in consumers}
        assert "casework" in consumers
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


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_every_service_is_deployed_like_the_others(rendered: dict[str, Docs]) -> None:
    """Each service of the registry (casework included) runs as `helpline run <service>` on
    its configured port, with the same probes, hardening, configuration and budget as the
    rest, and two replicas or more in production."""
    for name in ("dev", "production"):
        docs = rendered[name]
        deployments, services = _kind(docs, "Deployment"), _kind(docs, "Service")
        config = _kind(docs, "ConfigMap")["helpline-config"]["data"]
        reference = deployments["helpline-intake"]["spec"]["template"]
        for service in SERVICES:
            deployment = deployments[f"helpline-{service}"]
            pod = deployment["spec"]["template"]
            container = _container(deployment)
            port = getattr(Settings(), f"{service}_port")
            assert config[f"HELPLINE_{service.upper()}_PORT"] == str(port), (name, service)
            assert container["args"] == ["run", service]
            assert container["ports"] == [
                {"name": "http", "containerPort": port, "protocol": "TCP"}
            ]
            assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
            assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
            probes = {p: container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe")}
            assert probes == {"startupProbe": "/health/live", "livenessProbe": "/health/live"}
            assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
            assert (
                container["securityContext"]
                == _container(deployments["helpline-intake"])["securityContext"]
            )
            for key in ("securityContext", "automountServiceAccountToken"):
                assert pod["spec"][key] == reference["spec"][key], (service, key)
            env_from = {next(iter(e.values()))["name"] for e in container["envFrom"]}
            assert {"helpline-config", "helpline-secrets"} <= env_from, service
            (exposed,) = services[f"helpline-{service}"]["spec"]["ports"]
            assert (exposed["port"], exposed["targetPort"]) == (port, "http"), service
            replicas = deployment["spec"]["replicas"]
            assert replicas >= 2 if name == "production" else replicas == 1, (name, service)


def _session_readers(docs: Docs) -> dict[str, bool]:
    """Workloads reading the session secret, and whether their pods need it to start."""
    found = {}
    for workload in [*_kind(docs, "Deployment").values(), *_kind(docs, "Job").values()]:
        for e in _container(workload).get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef", {})
            if ref.get("name") == "helpline-session":
                assert e["name"] == ref["key"] == "HELPLINE_SESSION_SECRET"
                found[workload["metadata"]["name"]] = not ref.get("optional", False)
        assert "helpline-session" not in {
            e["secretRef"]["name"] for e in _container(workload)["envFrom"] if "secretRef" in e
        }
    return found


def test_only_intake_and_casework_hold_the_session_secret(rendered: dict[str, Docs]) -> None:
    """The key signing sessions and CSRF tokens reaches the two services with forms alone; it
    is required in production (every replica must sign alike) and optional in dev."""
    for name, docs in rendered.items():
        required = name.startswith("production")
        expected = {"helpline-intake": required, "helpline-casework": required}
        assert _session_readers(docs) == expected, name
        config = _kind(docs, "ConfigMap")["helpline-config"]["data"]
        assert "HELPLINE_SESSION_SECRET" not in config
        assert config["HELPLINE_COOKIE_SECURE"] == ("true" if required else "false"), name
    example = [
        d
        for d in yaml.safe_load_all((ROOT / "deploy/base/secret.example.yaml").read_text())
        if d["metadata"]["name"] == "helpline-session"
    ]
    assert [set(d["stringData"]) for d in example] == [{"HELPLINE_SESSION_SECRET"}]


def _ingress_backends(docs: Docs) -> dict[str, set[tuple[str, str, str]]]:
    """Per Service: the (host, path, pathType) the Ingresses route to it."""
    routed: dict[str, set[tuple[str, str, str]]] = {}
    for ingress in _kind(docs, "Ingress").values():
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert "defaultBackend" not in ingress["spec"]
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]["name"]
                routed.setdefault(service, set()).add(
                    (rule["host"], path["path"], path["pathType"])
                )
    return routed


def test_only_intakes_caseworks_and_notifys_public_paths_are_exposed(
    rendered: dict[str, Docs],
) -> None:
    """From outside: intake's report API and form, casework's API and pages, notify's status
    pages and status-link revocation, over TLS; never /metrics or the health probes, and
    nothing of triage, the escalator or metrics. The ingress controller may reach intake's,
    casework's and notify's pods alone; the status pages are rate-limited per address."""
    for name, docs in rendered.items():
        routed = _ingress_backends(docs)
        assert set(routed) == {"helpline-intake", "helpline-casework", "helpline-notify"}, name
        for service, routes in routed.items():
            for _, path, kind in routes:
                assert kind in ("Exact", "Prefix"), (service, path)
                assert path != "/" or kind == "Exact", (service, "all of it, /metrics too")
                assert not path.startswith(("/metrics", "/health")), (service, path)
        intake = {(p, k) for _, p, k in routed["helpline-intake"]}
        assert {("/v1/reports", "Prefix"), ("/report", "Exact")} <= intake
        casework = {(p, k) for _, p, k in routed["helpline-casework"]}
        assert {("/v1/cases", "Prefix"), ("/v1/queue", "Prefix"), ("/signin", "Exact")} <= casework
        notify = {(h, p, k) for h, p, k in routed["helpline-notify"]}
        status_host = {h for h, p, _ in notify if p == "/status"}
        assert status_host == {h for h, _, _ in notify}, "notify is served on one host"
        assert not status_host & {h for h, _, _ in routed["helpline-casework"]}
        pages = [
            i
            for i in _kind(docs, "Ingress").values()
            if any(p["path"] == "/status" for r in i["spec"]["rules"] for p in r["http"]["paths"])
        ]
        assert [
            int(i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rpm"])
            for i in pages
        ] == [30], name
        for ingress in _kind(docs, "Ingress").values():
            hosts = {r["host"] for r in ingress["spec"]["rules"]}
            assert hosts <= {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
        policy = _kind(docs, "NetworkPolicy")["helpline-ingress-apis"]
        (rule,) = policy["spec"]["ingress"]
        (source,) = rule["from"]
        assert source["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "ingress-nginx"
        }
        reachable = {
            s
            for s in (*SERVICES, "simulator")
            if _allows(
                policy, {"app.kubernetes.io/name": "helpline", "app.kubernetes.io/component": s}
            )
        }
        assert reachable == {"intake", "casework", "notify"}, name


def test_only_notify_holds_the_smtp_password_and_the_webhook_secret(
    rendered: dict[str, Docs],
) -> None:
    """The Secret `helpline-notify-credentials` (the SMTP password, the webhook's signing
    key) reaches notify alone, by name and never as a whole (envFrom); optional, so a relay
    without a login and no webhook need none. The example holds exactly those two settings, and the
    ConfigMap neither."""
    for name, docs in rendered.items():
        workloads = [*_kind(docs, "Deployment").values(), *_kind(docs, "Job").values()]
        holders = {
            w["metadata"]["name"]
            for w in workloads
            if "helpline-notify-credentials" in _secrets_read(w)
        }
        assert holders == {"helpline-notify"}, name
        notify = _container(_kind(docs, "Deployment")["helpline-notify"])
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in notify["env"]
            if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
            == "helpline-notify-credentials"
        }
        assert set(refs) == {"HELPLINE_SMTP_PASSWORD", "HELPLINE_ALERT_WEBHOOK_SECRET"}, name
        assert all(r["key"] == n and r["optional"] for n, r in refs.items()), refs
        config = _kind(docs, "ConfigMap")["helpline-config"]["data"]
        assert not set(refs) & set(config), name
        assert config["HELPLINE_STATUS_BASE_URL"].startswith("https://"), name
    example = [
        d
        for d in yaml.safe_load_all((ROOT / "deploy/base/secret.example.yaml").read_text())
        if d["metadata"]["name"] == "helpline-notify-credentials"
    ]
    assert [set(d["stringData"]) for d in example] == [
        {"HELPLINE_SMTP_PASSWORD", "HELPLINE_ALERT_WEBHOOK_SECRET"}
    ]
