"""`helpline contracts`: the checked-in contract documents, generated from the code.

`docs/contracts/<topic>.v<N>.schema.json` is the JSON Schema of each version of each topic's
pydantic model (the registry's model and, during a rollout, the other versions consumers
read: `VERSIONS`); `docs/contracts/examples/<topic>.v<N>.json` is an example of each (checked
by the tests); `docs/asyncapi/<service>.json` is each service's AsyncAPI document from FastStream.
`--check` fails when a checked-in file differs, so a contract change shows up in review.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from helpline_cli.services import FACTORIES
from helpline_shared.events import ReportSubmittedV2
from helpline_shared.settings import Settings
from helpline_shared.topics import ALL_TOPICS, REPORTS_SUBMITTED

SERVICES = ("intake", "triage", "escalator", "metrics", "casework", "notify")

# Versions beyond the registry's model that a topic carries (its consumers read them all).
OTHER_VERSIONS: dict[str, tuple[type[BaseModel], ...]] = {
    REPORTS_SUBMITTED.name: (ReportSubmittedV2,),
}


def schema_version(model: type[BaseModel]) -> int:
    return int(get_args(model.model_fields["schema_version"].annotation)[0])


def versions() -> dict[str, dict[int, type[BaseModel]]]:
    """Each topic with a model: its models by schema version."""
    out: dict[str, dict[int, type[BaseModel]]] = {}
    for topic in ALL_TOPICS:
        if topic.model is not None:
            models = (topic.model, *OTHER_VERSIONS.get(topic.name, ()))
            out[topic.name] = {schema_version(m): m for m in models}
    return out


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def generate() -> dict[str, str]:
    files: dict[str, str] = {}
    for topic, models in versions().items():
        for version, model in models.items():
            files[f"docs/contracts/{topic}.v{version}.schema.json"] = _dump(
                model.model_json_schema()
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
