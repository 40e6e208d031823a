"""Contracts: every example payload validates against its versioned model, and the
checked-in JSON Schemas and AsyncAPI documents match what the code generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpline_cli.contracts import write_or_check
from helpline_shared.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "docs/contracts/examples").glob("*.json"))
MODELS = {t.name: t.model for t in ALL_TOPICS if t.model is not None}


def test_every_topic_with_a_model_has_an_example() -> None:
    named = {p.name.rsplit(".v", 1)[0] for p in EXAMPLES}
    assert named == set(MODELS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_its_version(path: Path) -> None:
    topic, version = path.name.removesuffix(".json").rsplit(".v", 1)
    event = MODELS[topic].model_validate_json(path.read_bytes())
    assert str(event.schema_version) == version  # type: ignore[attr-defined]


def test_readme_example_report_is_valid() -> None:
    model = MODELS["helpline.reports.submitted"]
    model.model_validate_json((ROOT / "examples/report.json").read_bytes())


def test_checked_in_contract_documents_match_the_code() -> None:
    differing = write_or_check(ROOT, check=True)
    assert differing == [], f"run `helpline contracts` and commit: {differing}"
