"""Casework's OpenAPI document against the running service (its own process, the real
broker and database, a read model holding cases): schemathesis generates a bounded number
of requests per operation; none may answer 5xx, and every answer must match the status
codes, content types, headers and schemas the document declares."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from helpline_casework import projection
from helpline_cli.infra import free_port
from helpline_cli.stack import Stack
from helpline_shared import apikeys
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from tests.conftest import fresh_database
from tests.infra import Infra, dedicated_broker
from tests.test_casework_readmodel import one_case

pytestmark = pytest.mark.e2e

EXAMPLES = 30  # per operation
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@dataclass
class Served:
    url: str
    key: str


@pytest.fixture(scope="module")
async def served_casework(infra: Infra, tmp_dir: Path) -> AsyncIterator[Served]:
    with dedicated_broker(infra, tmp_dir) as servers:
        url = await fresh_database(infra, "helpline_casework_openapi")
        env = {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATABASE_URL": url,
            "HELPLINE_CASEWORK_PORT": str(free_port()),
            "HELPLINE_RATE_LIMIT_PER_KEY": "100000/minute",
            "HELPLINE_RATE_LIMIT_PER_CLIENT": "100000/minute",
            "HELPLINE_LOG_JSON": "true",
        }
        settings_ = Settings(**{k.removeprefix("HELPLINE_").lower(): v for k, v in env.items()})
        stack = await Stack.prepare(settings_, log_dir=tmp_dir / "casework-openapi", extra_env=env)
        db = Database(url)
        await db.open()
        try:
            async with db.pool.acquire() as conn:
                _, key = await apikeys.create(conn, ["practitioner"], None, "openapi", "tests")
                for _ in range(3):  # some cases to read, whole ones
                    async with conn.transaction():
                        await projection.apply(conn, one_case()[1])
            await stack.start_services(("casework",))
            yield Served(stack.url("casework"), key)
        finally:
            await db.close()
            await asyncio.to_thread(stack.stop)


def test_every_answer_matches_the_document(served_casework: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served_casework.url}/openapi.json")
    headers = {"Authorization": f"Bearer {served_casework.key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            seen[case.operation.label, response.status_code] += 1

        conforms()
    # It ran: every operation answered, the reads with their results.
    assert {label for label, _ in seen} == {op.label for op in operations}
    assert seen["GET /v1/queue", 200] > 0
    assert seen["GET /v1/cases", 200] > 0


async def test_every_operation_declares_a_key_and_its_refusals(served_casework: Served) -> None:
    async with httpx.AsyncClient(base_url=served_casework.url) as client:
        document = (await client.get("/openapi.json")).json()
    operations = [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]
    assert {(p, m) for p, m, _ in operations} == {
        ("/v1/cases/{case_id}", "get"),
        ("/v1/cases", "get"),
        ("/v1/queue", "get"),
        ("/v1/escalations/{escalation_id}/actions", "post"),
        ("/v1/cases/{case_id}/retriage", "post"),
    }
    for path, method, op in operations:
        assert {"401", "403", "429"} <= set(op["responses"]), (path, method)
        assert op["security"] == [{"bearerAuth": []}], (path, method)
