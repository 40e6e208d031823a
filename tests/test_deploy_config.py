"""The deployment files name only settings that exist, and configure what production needs."""

from __future__ import annotations

import re
from pathlib import Path

from helpline_shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy").rglob("*.yaml"))]
BUILD_ARGS = {"HELPLINE_UID", "HELPLINE_GID"}  # Dockerfile build arguments, not settings


def test_every_helpline_variable_is_a_setting() -> None:
    known = {f"HELPLINE_{name.upper()}" for name in Settings.model_fields}
    for path in FILES:
        used = set(re.findall(r"HELPLINE_[A-Z0-9_]+", path.read_text())) - BUILD_ARGS
        assert used <= known, f"{path.relative_to(ROOT)}: {sorted(used - known)}"


def test_compose_runs_real_kafka_with_idempotence_and_no_auto_creation() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"HELPLINE_KAFKA_ENABLE_IDEMPOTENCE:\s*\"?true", compose)
    assert re.search(r"KAFKA_AUTO_CREATE_TOPICS_ENABLE:\s*\"?false", compose)
    for command in ("topics create", "db migrate"):
        assert command in compose
