"""`helpline contracts`: the checked-in contract documents, generated from the code.

`docs/contracts/<topic>.v<N>.schema.json` is each topic's JSON Schema from its pydantic
model; `docs/asyncapi/<service>.json` is each service's AsyncAPI document from FastStream.
`--check` fails when a checked-in file differs, so a contract change shows up in review.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

from helpline_cli.services import FACTORIES
from helpline_shared.settings import Settings
from helpline_shared.topics import ALL_TOPICS

SERVICES = ("intake", "triage", "escalator", "metrics")


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def generate() -> dict[str, str]:
    files: dict[str, str] = {}
    for topic in ALL_TOPICS:
        if topic.model is None:
            continue
        version = get_args(topic.model.model_fields["schema_version"].annotation)[0]
        files[f"docs/contracts/{topic.name}.v{version}.schema.json"] = _dump(
            topic.model.model_json_schema()
        )
    settings = Settings(database_url="postgresql://docs.invalid/helpline")
    for service in SERVICES:
        app = FACTORIES[service](settings)
        spec = app.schema.to_specification().to_jsonable()
        spec["info"]["title"] = f"helpline {service}"
        files[f"docs/asyncapi/{service}.json"] = _dump(spec)
    return files


def write_or_check(root: Path, *, check: bool) -> list[str]:
    """Write the documents under `root`, or list those that differ when `check`."""
    differing = []
    for rel, text in generate().items():
        path = root / rel
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        differing.append(rel)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return differing
