"""Contracts: every example payload validates against its versioned model, and the
checked-in JSON Schemas and AsyncAPI documents match what the code generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpline_cli.contracts import versions, write_or_check

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "docs/contracts/examples").glob("*.json"))
VERSIONS = versions()


def test_every_version_of_every_topic_has_an_example() -> None:
    named = {tuple(p.name.removesuffix(".json").rsplit(".v", 1)) for p in EXAMPLES}
    assert named == {(t, str(v)) for t, models in VERSIONS.items() for v in models}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_its_version(path: Path) -> None:
    topic, version = path.name.removesuffix(".json").rsplit(".v", 1)
    event = VERSIONS[topic][int(version)].model_validate_json(path.read_bytes())
    assert str(event.schema_version) == version  # type: ignore[attr-defined]


def test_readme_example_report_is_valid() -> None:
    model = VERSIONS["helpline.reports.submitted"][1]
    model.model_validate_json((ROOT / "examples/report.json").read_bytes())


def test_checked_in_contract_documents_match_the_code() -> None:
    differing = write_or_check(ROOT, check=True)
    assert differing == [], f"run `helpline contracts` and commit: {differing}"
