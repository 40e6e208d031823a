"""The platforms' credentials in each deployment: production requires them (the escalator's
`helpline-platforms` Secret, or a platforms file mounted from a Secret) and the examples
let it start; compose and the dev overlay run the escalator with development credentials
against the simulator, which expects exactly those."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from helpline_escalator.adapters.hotline import CREDENTIALS_ENV as HOTLINE_CREDENTIALS
from helpline_escalator.adapters.hotline import hotline_settings
from helpline_escalator.platform_settings import (
    PLATFORM_SLUGS,
    is_simulator,
    load_platform_settings,
)
from helpline_escalator.platforms_file import FILE_ENV
from helpline_shared.settings import Settings
from helpline_simulator.credentials import dev_credential

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy/base/secret.example.yaml"
Docs = list[dict[str, Any]]


def _validate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_validate", ROOT / "deploy/validate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


validate = _validate()


@pytest.fixture(scope="module")
def rendered() -> dict[str, Docs]:
    names = ("dev", "production", "production+platforms-file")
    return {str(v): validate.render(v) for v in validate.variants() if str(v) in names}


def _escalator(docs: Docs) -> dict[str, Any]:
    [escalator] = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "helpline-escalator"
    ]
    return escalator


def _platforms_ref(docs: Docs) -> dict[str, Any]:
    [container] = _escalator(docs)["spec"]["template"]["spec"]["containers"]
    [ref] = [
        e["secretRef"]
        for e in container["envFrom"]
        if e.get("secretRef", {}).get("name") == "helpline-platforms"
    ]
    return dict(ref)


def _example(name: str) -> dict[str, str]:
    [secret] = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["metadata"]["name"] == name]
    return dict(secret["stringData"])


def _production_settings() -> Settings:
    patch = yaml.safe_load((ROOT / "deploy/overlays/production/configmap-patch.yaml").read_text())
    return Settings(platform_base_url=patch["data"]["HELPLINE_PLATFORM_BASE_URL"])


@pytest.fixture
def no_platform_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*_example("helpline-platforms"), FILE_ENV, HOTLINE_CREDENTIALS]:
        monkeypatch.delenv(name, raising=False)


def test_production_requires_the_platforms_secret_and_dev_does_not(
    rendered: dict[str, Docs],
) -> None:
    assert _platforms_ref(rendered["production"]).get("optional") is False
    assert _platforms_ref(rendered["dev"]).get("optional") is True
    # With the platforms file, the file holds the credentials: the variables are optional.
    assert _platforms_ref(rendered["production+platforms-file"]).get("optional") is True


def test_the_platforms_file_component_mounts_the_file_the_escalator_reads(
    rendered: dict[str, Docs],
) -> None:
    docs = rendered["production+platforms-file"]
    pod = _escalator(docs)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [path] = [e["value"] for e in container["env"] if e["name"] == FILE_ENV]
    [mount] = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "helpline-platforms-file"
    [item] = volume["secret"]["items"]
    assert f"{mount['mountPath']}/{item['path']}" == path
    assert item["key"] in _example("helpline-platforms-file")
    # No other workload mounts the file.
    holders = {
        d["metadata"]["name"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        and any(
            v.get("secret", {}).get("secretName") == "helpline-platforms-file"
            for v in d["spec"]["template"]["spec"].get("volumes", [])
        )
    }
    assert holders == {"helpline-escalator"}


def test_the_example_platforms_file_lets_production_start(
    no_platform_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _production_settings()
    with pytest.raises(ValueError, match="no credentials configured"):
        load_platform_settings(settings)
    [(name, text)] = _example("helpline-platforms-file").items()
    (tmp_path / name).write_text(text)
    monkeypatch.setenv(FILE_ENV, str(tmp_path / name))
    resolved = load_platform_settings(settings)
    assert not [slug for slug, p in resolved.items() if p.dev_credentials]
    # The file and the variables' example configure the same platforms' credentials; the
    # hotline's stay a variable of helpline-platforms (the file holds platforms only).
    from_file = {
        f"HELPLINE_PLATFORMS__{slug.upper()}__{field.upper()}"
        for slug, table in tomllib.loads(text).items()
        for field in table
    }
    assert from_file == set(_example("helpline-platforms")) - {HOTLINE_CREDENTIALS}


@pytest.mark.parametrize("where", ["compose", "dev overlay"])
def test_dev_stacks_use_development_credentials_against_the_simulator(
    no_platform_env: None, where: str
) -> None:
    if where == "compose":
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        escalator = compose["services"]["escalator"]["environment"]
        assert "simulator" in compose["services"]
    else:
        patch = yaml.safe_load((ROOT / "deploy/overlays/dev/configmap-patch.yaml").read_text())
        escalator = patch["data"]
    url = escalator["HELPLINE_PLATFORM_BASE_URL"]
    assert is_simulator(url), url
    resolved = load_platform_settings(Settings(platform_base_url=url))
    for slug, p in resolved.items():
        assert p.base_url == url
        for name in ("credentials", "client_id", "client_secret"):
            value = getattr(p, name)
            if value is not None:  # what the simulator expects when none is configured
                secret = value if isinstance(value, str) else value.get_secret_value()
                assert secret == dev_credential(slug, name), (slug, name)
    assert {slug for slug, p in resolved.items() if p.dev_credentials} <= set(PLATFORM_SLUGS)
    assert any(p.dev_credentials for p in resolved.values())


def test_the_example_platforms_secret_configures_the_hotline(
    no_platform_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against production's gateway the hotline needs real credentials (without them the
    escalator refuses to start); the escalator's example Secret gives them, and the dev
    stacks use the development ones against the simulator."""
    settings = _production_settings()
    with pytest.raises(ValueError, match=HOTLINE_CREDENTIALS):
        hotline_settings(settings)
    monkeypatch.setenv(HOTLINE_CREDENTIALS, _example("helpline-platforms")[HOTLINE_CREDENTIALS])
    hotline = hotline_settings(_production_settings())
    assert not hotline.dev_credentials
    assert hotline.base_url == settings.platform_base_url
    monkeypatch.delenv(HOTLINE_CREDENTIALS)
    patch = yaml.safe_load((ROOT / "deploy/overlays/dev/configmap-patch.yaml").read_text())
    dev = hotline_settings(Settings(platform_base_url=patch["data"]["HELPLINE_PLATFORM_BASE_URL"]))
    assert dev.dev_credentials
