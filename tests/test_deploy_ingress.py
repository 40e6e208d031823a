"""The Ingresses route exactly the public paths of intake (the report API and form),
casework (the practitioners' API and pages) and notify (the reporters' status pages, the
status-link revocation), as the services themselves define them: every
such path is reachable from outside, no Ingress path leads nowhere, and `/metrics` and the
health probes (served on the same ports) are never routed."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from helpline_casework.actions import Actions
from helpline_casework.http import build_api as casework_api
from helpline_casework.pages import build_pages
from helpline_intake.form import build_form_routes
from helpline_intake.http import build_api as intake_api
from helpline_notify.status_page import build_router as status_router
from helpline_shared.db import Database
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_shared.webapi import Access, new_api
from helpline_shared.websession import Sessions

ROOT = Path(__file__).resolve().parent.parent
INTERNAL = ("/metrics", "/health/live", "/health/ready")


def _validate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_validate", ROOT / "deploy/validate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


Rule = tuple[str, str, str, str]  # host, path, pathType, service


@pytest.fixture(scope="module")
def rules() -> dict[str, list[Rule]]:
    validate = _validate()
    found: dict[str, list[Rule]] = {}
    for variant in validate.variants():
        docs = validate.render(variant)
        found[str(variant)] = [
            (rule["host"], path["path"], path["pathType"], path["backend"]["service"]["name"])
            for doc in docs
            if doc["kind"] == "Ingress"
            for rule in doc["spec"]["rules"]
            for path in rule["http"]["paths"]
        ]
    return found


def _routed(rules: list[Rule], path: str) -> set[tuple[str, str]]:
    """(host, service) pairs a request path reaches: Kubernetes' Exact and Prefix matching
    (a prefix matches whole path elements)."""
    return {
        (host, service)
        for host, rule, kind, service in rules
        if path == rule
        or (kind == "Prefix" and path.startswith(rule.rstrip("/") + "/"))
        or (kind == "Prefix" and rule == "/")
    }


def _paths(routes: Any) -> set[str]:
    return {route.path for route in routes if hasattr(route, "path")}


@pytest.fixture(scope="module")
def public() -> dict[str, set[str]]:
    """Each service's public paths, from the services' own route tables (built, not run:
    nothing connects to the unreachable database or broker)."""
    settings = Settings(database_url="postgresql://unused@127.0.0.1:1/unused")
    db = Database(settings.database_url or "")
    broker = KafkaBroker()
    access = Access(db, settings)
    actions = Actions(db, Outbox(db, broker, "casework"))
    intake: FastAPI = intake_api(broker, db, access)
    casework: FastAPI = casework_api(db, access, actions)
    pages = build_pages(db, access, Sessions(settings), actions, settings)
    # As helpline_notify.app builds it: new_api's routes and the status pages' router (read
    # from the router itself: FastAPI includes a router's routes lazily).
    status = status_router(db, access, settings)
    notify = new_api("helpline notify", "as helpline_notify.app builds it")
    notify.include_router(status)
    return {
        "helpline-intake": _paths(intake.routes)
        | {path for path, _ in build_form_routes(broker, db, settings)},
        "helpline-casework": _paths(casework.routes) | _paths(pages.routes),
        "helpline-notify": _paths(notify.routes) | _paths(status.routes),
    }


def _sample(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", template)


def test_every_public_path_is_routed_to_its_service(
    rules: dict[str, list[Rule]], public: dict[str, set[str]]
) -> None:
    assert "/v1/reports" in public["helpline-intake"]
    assert "/report" in public["helpline-intake"]
    assert "/v1/queue" in public["helpline-casework"]
    assert "/status/{token}" in public["helpline-notify"]
    for variant, found in rules.items():
        for service, paths in public.items():
            for template in paths:
                reached = _routed(found, _sample(template))
                hosts = {host for host, s in reached if s == service}
                assert hosts, (variant, service, template, "not routed")
                on_its_hosts = {s for host, s in reached if host in hosts}
                assert on_its_hosts == {service}, (variant, template, on_its_hosts)


def test_no_ingress_path_leads_nowhere_and_nothing_internal_is_routed(
    rules: dict[str, list[Rule]], public: dict[str, set[str]]
) -> None:
    for variant, found in rules.items():
        for _, path, kind, service in found:
            samples = {_sample(t) for t in public[service]}
            served = [
                s for s in samples if s == path or (kind == "Prefix" and s.startswith(path + "/"))
            ]
            assert served, (variant, service, path, "no such route")
        for path in INTERNAL:
            assert _routed(found, path) == set(), (variant, path)
        assert _routed(found, "/anything-else") == set(), variant
