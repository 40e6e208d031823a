"""Every HTTP API (intake, metrics and casework) against its own OpenAPI document, with
schemathesis over a real broker and PostgreSQL: for each operation a bounded number of
generated requests (with a key of every scope), both valid ones and ones the document says
are invalid, none answered 5xx, and every answer's status code, content type, headers and
body are ones the document declares.

`check_api(url, key)` is the whole check for one served API; call it for any service with
an `/openapi.json`."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from helpline_casework import projection
from helpline_casework.app import create_app as casework_app
from helpline_intake.app import create_app as intake_app
from helpline_metrics.app import create_app as metrics_app
from helpline_notify.app import create_app as notify_app
from helpline_shared.db import Database
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from tests.conftest import fresh_database
from tests.helpers import bearer, every_scope_key
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_casework_readmodel import one_case

# The services run in this process's event loop while hypothesis draws in a worker thread;
# their use of the global `random` (client backoff jitter) changes its state mid-draw, which
# hypothesis takes for a strategy using `random`. The strategies are schemathesis's own.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SOURCE = "schemathesis"


def check_api(
    url: str, key: str, *, max_examples: int = 30, source: str | None = None
) -> dict[str, Counter[int]]:
    """Run schemathesis against the API served at `url` (its `/openapi.json`), sending
    `key`; raises on the first answer that is 5xx or not as documented. Each operation gets
    `max_examples` requests, drawn from generated data (valid, and invalid as the document
    says, for the refusals) and from the document's examples.
    With `source`, a JSON body's `source` is set to it, so reports get past the key's source
    binding to validation and publishing. Blocking: call it in a thread when the API is
    served by this process's event loop (and see `pytestmark` above). Returns, per operation
    checked, how often each status code was answered."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    checked: dict[str, Counter[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(),
            operation.as_strategy(GenerationMode.NEGATIVE),
            *schema.get_strategies_from_examples(operation),
        )
        if source is not None:
            strategy = strategy.map(lambda case: _with_source(case, source))
        name = f"{operation.method.upper()} {operation.path}"
        checked[name] = _check_operation(strategy, url, key, max_examples)
    return checked


def _check_operation(
    strategy: st.SearchStrategy[Any], url: str, key: str, max_examples: int
) -> Counter[int]:
    answered: Counter[int] = Counter()

    @given(case=strategy)
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=url, headers=bearer(key), timeout=15)
        answered[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    run()
    return answered


def _with_source(case: Any, source: str) -> Any:
    if isinstance(case.body, dict) and "source" in case.body:
        case.body["source"] = source
    return case


@pytest.fixture(scope="module")
async def apis(infra: Infra, tmp_dir: Path) -> AsyncIterator[tuple[dict[str, str], str]]:
    with dedicated_broker(infra, tmp_dir) as servers:
        config = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_openapi"),
            rate_limit_per_key="100000/minute",
            rate_limit_per_client="100000/minute",
        )
        await create_topics(config)
        key = await every_scope_key(config.database_url or "", source=SOURCE)
        db = Database(config.database_url or "")
        await db.open()
        try:
            async with db.pool.acquire() as conn:
                for _ in range(3):  # whole cases for casework to read
                    async with conn.transaction():
                        await projection.apply(conn, one_case()[1])
        finally:
            await db.close()
        async with (
            served(intake_app(config)) as intake,
            served(metrics_app(config)) as metrics,
            served(casework_app(config)) as casework,
            served(notify_app(config)) as notify,
        ):
            yield (
                {
                    "intake": intake,
                    "metrics": metrics,
                    "casework": casework,
                    "notify": notify,
                },
                key,
            )


async def test_intake_answers_as_its_document_says(
    apis: tuple[dict[str, str], str],
) -> None:
    urls, key = apis
    started = time.monotonic()

    checked = await asyncio.to_thread(check_api, urls["intake"], key, source=SOURCE)

    assert list(checked) == ["POST /v1/reports"]
    statuses = checked["POST /v1/reports"]
    assert statuses[202], statuses  # reports taken (the document's example, at least)
    assert statuses[422], statuses  # and refused
    assert time.monotonic() - started < 90


async def test_metrics_answers_as_its_document_says(
    apis: tuple[dict[str, str], str],
) -> None:
    urls, key = apis
    started = time.monotonic()

    checked = await asyncio.to_thread(check_api, urls["metrics"], key)

    assert sorted(checked) == ["GET /dashboard", "GET /v1/report", "GET /v1/totals"]
    assert all(statuses[200] for statuses in checked.values()), checked
    assert time.monotonic() - started < 90


async def test_casework_answers_as_its_document_says(
    apis: tuple[dict[str, str], str],
) -> None:
    urls, key = apis
    started = time.monotonic()

    checked = await asyncio.to_thread(check_api, urls["casework"], key, max_examples=20)

    assert sorted(checked) == [
        "GET /v1/cases",
        "GET /v1/cases/{case_id}",
        "GET /v1/queue",
        "POST /v1/cases/{case_id}/retriage",
        "POST /v1/escalations/{escalation_id}/actions",
    ]
    assert checked["GET /v1/cases"][200], checked  # the cases stored are listed
    assert checked["GET /v1/queue"][200], checked
    for action in (
        "POST /v1/cases/{case_id}/retriage",
        "POST /v1/escalations/{escalation_id}/actions",
    ):
        assert checked[action][422], checked  # malformed bodies refused as documented
    assert time.monotonic() - started < 120


async def test_notify_answers_as_its_document_says(
    apis: tuple[dict[str, str], str],
) -> None:
    urls, key = apis

    checked = await asyncio.to_thread(check_api, urls["notify"], key, max_examples=20)

    assert "POST /v1/cases/{case_id}/status-link/revoke" in checked
    assert checked["POST /v1/cases/{case_id}/status-link/revoke"][200], checked


async def test_the_documents_declare_the_key_and_its_refusals(
    apis: tuple[dict[str, str], str],
) -> None:
    urls, _ = apis
    async with httpx.AsyncClient() as client:
        documents = {
            name: (await client.get(f"{url}/openapi.json")).json() for name, url in urls.items()
        }
    for name, document in documents.items():
        schemes = document["components"]["securitySchemes"]
        assert schemes["bearerAuth"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["bearerAuth"]["description"],
        }
        for path, methods in document["paths"].items():
            for method, operation in methods.items():
                where = f"{name} {method.upper()} {path}"
                assert operation["security"] == [{"bearerAuth": []}], where
                for status in ("401", "403", "429"):
                    content = operation["responses"][status]["content"]
                    assert list(content) == ["application/problem+json"], where
                assert "Retry-After" in operation["responses"]["429"]["headers"], where
    body = documents["intake"]["paths"]["/v1/reports"]["post"]["requestBody"]
    report = body["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in report["anyOf"]} == {
        "ReportSubmittedV1",
        "ReportSubmittedV2",
    }
    schemas = documents["intake"]["components"]["schemas"]
    for version in ("ReportSubmittedV1", "ReportSubmittedV2"):
        url = schemas[version]["properties"]["urls"]["items"]
        assert "WHATWG" in url["description"], version
        assert url["maxLength"] == 2048, version  # as the model has it
        assert url["minLength"] == 1, version
        for taken in ("https://www.tiktok.com/@a", " HTTP://a.example", "https:a.example"):
            assert re.search(url["pattern"], taken), (version, taken)
        for refused in ("ftp://a.example", "a.example", "javascript:alert(1)"):
            assert not re.search(url["pattern"], refused), (version, refused)
