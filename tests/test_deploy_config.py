"""The deployment files name only settings that exist, and configure what production needs:
compose valid and locked to loopback, alert rules valid and each linked to its runbook."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from pydantic import AliasChoices

from helpline_escalator.adapters.hotline import CREDENTIALS_ENV as HOTLINE_CREDENTIALS
from helpline_escalator.platform_settings import (
    PLATFORM_SLUGS,
    PlatformConfig,
    load_platform_settings,
)
from helpline_escalator.platforms_file import FILE_ENV
from helpline_shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").rglob("*.yaml"))]
BUILD_ARGS = {"HELPLINE_UID", "HELPLINE_GID"}  # Dockerfile build arguments, not settings


def _platform_variables() -> set[str]:
    """`HELPLINE_PLATFORMS__<SLUG>__<FIELD>`: the escalator's per-platform settings."""
    fields = set(PlatformConfig.model_fields)
    for field in PlatformConfig.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            fields |= {str(choice) for choice in alias.choices}
    return {
        f"HELPLINE_PLATFORMS__{slug.upper()}__{name.upper()}"
        for slug in PLATFORM_SLUGS
        for name in fields
    }


def test_every_helpline_variable_is_a_setting() -> None:
    known = {f"HELPLINE_{name.upper()}" for name in Settings.model_fields}
    known |= _platform_variables() | {FILE_ENV, HOTLINE_CREDENTIALS}
    for path in FILES:
        used = set(re.findall(r"HELPLINE_[A-Z0-9_]+", path.read_text())) - BUILD_ARGS
        assert used <= known, f"{path.relative_to(ROOT)}: {sorted(used - known)}"


def _production_platform_url() -> str:
    patch = yaml.safe_load((ROOT / "deploy/overlays/production/configmap-patch.yaml").read_text())
    return str(patch["data"]["HELPLINE_PLATFORM_BASE_URL"])


def test_the_example_platform_secret_lets_production_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator filling in `helpline-platforms` as the example shows gets an escalator that
    starts against real platforms; without it, it refuses to (no development credentials)."""
    docs = yaml.safe_load_all((ROOT / "deploy/base/secret.example.yaml").read_text())
    secret = next(d for d in docs if d["metadata"]["name"] == "helpline-platforms")
    settings = Settings(platform_base_url=_production_platform_url())
    for name in secret["stringData"]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="no credentials configured"):
        load_platform_settings(settings)
    for name, value in secret["stringData"].items():
        monkeypatch.setenv(name, value)
    resolved = load_platform_settings(settings)
    assert not [slug for slug, p in resolved.items() if p.dev_credentials]
    assert resolved["tiktok"].base_url == settings.platform_base_url


def test_compose_runs_real_kafka_with_idempotence_and_no_auto_creation() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"HELPLINE_KAFKA_ENABLE_IDEMPOTENCE:\s*\"?true", compose)
    assert re.search(r"KAFKA_AUTO_CREATE_TOPICS_ENABLE:\s*\"?false", compose)
    for command in ("topics create", "db migrate"):
        assert command in compose


def _deploy_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_compose_file_follows_the_compose_specification() -> None:
    validate = _deploy_module("validate")
    text = (ROOT / "docker-compose.yml").read_text()
    assert validate.compose_problems(text) == []
    broken = text.replace("condition: service_healthy", "condition: service_happy", 1)
    broken = broken.replace("  postgres:\n", "  postgres:\n    imag: postgres:16\n", 1)
    found = validate.compose_problems(broken)
    assert any("service_happy" in p for p in found), found
    assert any("imag" in p for p in found), found


def test_compose_publishes_only_on_loopback_and_holds_no_password() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published
    assert all(str(p).startswith("127.0.0.1:") for p in published), published
    env = compose["x-helpline-env"] | compose["services"]["postgres"]["environment"]
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    user_info = env["HELPLINE_DATABASE_URL"].split("//", 1)[1].split("@", 1)[0]
    assert user_info.startswith("helpline:${POSTGRES_PASSWORD:?"), user_info
    assert "simulator" not in {
        name for name, s in compose["services"].items() if s.get("ports")
    }  # its control endpoints stay inside the compose network
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert (ROOT / ".env.example").read_text().count("POSTGRES_PASSWORD=") == 1


def _alerts() -> list[dict[str, str]]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_every_alert_links_to_its_runbook_section() -> None:
    runbook = (ROOT / "docs/operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    alerts = _alerts()
    assert len(alerts) >= 6
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{rule['alert'].lower()}", rule["alert"]
        assert url.split("#", 1)[1] in anchors, rule["alert"]


# Named by an alert but exported by no service yet, each with the work that adds it; the
# test below fails once one is exported, so the entry goes when the alert can fire.
NOT_YET_EXPORTED: dict[str, str] = {}


def _exported(name: str, code: str) -> bool:
    """Some service's code names the metric (a prometheus_client Counter is declared
    without its `_total`; a histogram's series carry `_bucket`, `_sum`, `_count`)."""
    base = re.sub(r"_(total|bucket|sum|count)$", "", name)
    return re.search(rf"[\"'`]{re.escape(base)}(_total)?[\"'`]", code) is not None


def test_every_alert_watches_a_metric_a_service_exports() -> None:
    code = "\n".join(
        p.read_text() for top in ("services", "shared") for p in (ROOT / top).rglob("*.py")
    )
    used = {
        name
        for rule in _alerts()
        for name in re.findall(r"\b[a-z_:][a-z0-9_:]*(?=\s*[{\[)]|\s*[=!<>]|\s*$)", rule["expr"])
        if name.startswith("helpline_")
    }
    assert {"helpline_consumer_ready", "helpline_consumer_lag"} <= used
    for rule in _alerts():  # only our own metrics: no alert waits on an optional exporter
        names = set(re.findall(r"\b([a-z][a-z0-9]*_[a-z0-9_]+)\s*[{\[]", rule["expr"]))
        assert all(n.startswith("helpline_") for n in names), (rule["alert"], names)
    for name in sorted(used):
        if name in NOT_YET_EXPORTED:
            assert not _exported(name, code), f"{name} is exported now: drop it from the list"
        else:
            assert _exported(name, code), f"{name}: no service exports it"


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (.ci/run installs Debian's prometheus)"
)


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], check=False, capture_output=True, text=True)


@needs_promtool
def test_alert_rules_pass_promtool_and_their_unit_tests(tmp_path: Path) -> None:
    rules = ROOT / "deploy/prometheus/alerts.yaml"
    checked = _promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", ROOT / "deploy/prometheus/alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    broken = tmp_path / "alerts.yaml"
    broken.write_text(rules.read_text().replace("helpline_consumer_ready == 0", "== 0", 1))
    assert _promtool("check", "rules", broken).returncode != 0
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    (quiet / "alerts.yaml").write_text(
        rules.read_text().replace("for: 5m\n", "for: 50m\n", 1)  # NotReady fires too late
    )
    (quiet / "alerts.test.yaml").write_text(
        (ROOT / "deploy/prometheus/alerts.test.yaml").read_text()
    )
    assert _promtool("test", "rules", quiet / "alerts.test.yaml").returncode != 0


def test_compose_runs_every_service_and_gives_the_session_secret_to_the_forms() -> None:
    """Each service of the registry runs as `helpline run <service>`, after init, checked on
    its own port; only intake and casework get the session secret, and it comes from .env."""
    from helpline_shared.topics import SERVICES

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    defaults = Settings()
    for service in SERVICES:
        spec = compose["services"][service]
        port = getattr(defaults, f"{service}_port")
        assert spec["command"] == ["run", service]
        assert spec["environment"][f"HELPLINE_{service.upper()}_PORT"] == str(port)
        assert f"127.0.0.1:{port}/health/ready" in " ".join(spec["healthcheck"]["test"])
        assert spec["depends_on"]["init"]["condition"] == "service_completed_successfully"
        secret = spec["environment"].get("HELPLINE_SESSION_SECRET")
        if service in ("intake", "casework"):
            assert secret.startswith("${HELPLINE_SESSION_SECRET:?"), service
        else:
            assert secret is None, service
    assert "127.0.0.1:8005:8005" in compose["services"]["casework"]["ports"]


def test_every_service_is_watched_for_going_missing() -> None:
    """HelplineServiceMissing names each service of the registry: one that stopped reporting
    altogether (casework included) pages like the others."""
    from helpline_shared.topics import SERVICES

    (missing,) = [rule for rule in _alerts() if rule["alert"] == "HelplineServiceMissing"]
    watched = set(
        re.findall(r'absent\(helpline_consumer_ready\{service="([a-z]+)"\}\)', missing["expr"])
    )
    assert watched == set(SERVICES)


def test_compose_sends_notifys_mail_to_its_catcher() -> None:
    """Notify's email in compose goes to the `mailcatcher` service (`helpline mail catch`, on
    the port the SMTP settings name, plain SMTP), which publishes no port and keeps the
    messages in a volume under its data directory, where `helpline mail list` reads them."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["notify"]["environment"]
    catcher = compose["services"]["mailcatcher"]
    assert env["HELPLINE_SMTP_HOST"] == "mailcatcher"
    assert env["HELPLINE_SMTP_SECURITY"] == "none"
    command = catcher["command"]
    assert command[:2] == ["mail", "catch"]
    assert command[command.index("--port") + 1] == env["HELPLINE_SMTP_PORT"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert "ports" not in catcher
    data_dir = catcher["environment"]["HELPLINE_DATA_DIR"]
    assert any(v.endswith(f":{data_dir}") for v in catcher["volumes"]), catcher["volumes"]
    assert "aiosmtpd" in catcher["build"]["dockerfile_inline"]
    assert compose["services"]["notify"]["depends_on"]["mailcatcher"]
    assert env["HELPLINE_STATUS_BASE_URL"] == "http://127.0.0.1:8006"
    assert "127.0.0.1:8006:8006" in compose["services"]["notify"]["ports"]
