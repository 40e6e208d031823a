"""API keys on every keyed endpoint of intake and metrics, served over a real broker and
PostgreSQL: no key, a malformed, unknown or revoked key -> 401; a key without the scope ->
403 naming it; the right scope -> 2xx; a submit key only for its own source; rate limits
per key and per client address -> 429 with Retry-After; health probes, /metrics and the
public form stay open; sign-in sessions; and `helpline dev`'s kept key."""

from __future__ import annotations

import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from helpline_cli.dev import dev_key
from helpline_intake.app import create_app as intake_app
from helpline_intake.usecase import case_id_for
from helpline_metrics.app import create_app as metrics_app
from helpline_metrics.http import build_api as metrics_api
from helpline_shared import apikeys
from helpline_shared.db import Database
from helpline_shared.events import ReportSubmittedV1
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.webapi import PROBLEM_MEDIA_TYPE, Access
from helpline_shared.websession import SESSION_COOKIE, Sessions
from tests.conftest import fresh_database
from tests.helpers import bearer, create_key
from tests.infra import Infra, dedicated_broker
from tests.intake_support import report
from tests.served import served

PER_KEY = 12  # requests a key may make per minute in this module's services
SECRET = "test-session-secret-" + "x" * 20
OTHER_SECRET = "another-secret-" + "y" * 20


@dataclass(frozen=True)
class Served:
    urls: dict[str, str]
    database_url: str

    async def key(self, *scopes: str, source: str | None = None) -> str:
        return await create_key(self.database_url, *scopes, source=source)


@dataclass(frozen=True)
class Endpoint:
    service: str
    method: str
    path: str
    scope: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


KEYED = [
    Endpoint("intake", "POST", "/v1/reports", "submit"),
    Endpoint("metrics", "GET", "/v1/totals", "read"),
    Endpoint("metrics", "GET", "/v1/report?year=2024", "read"),
    Endpoint("metrics", "GET", "/dashboard", "read"),
]
SOURCE = "access-tests"


@pytest.fixture(scope="module")
async def system(infra: Infra, tmp_dir: Path) -> AsyncIterator[Served]:
    with dedicated_broker(infra, tmp_dir) as servers:
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_access"),
            rate_limit_per_key=f"{PER_KEY}/minute",
            rate_limit_per_client="100000/minute",
            session_secret=SecretStr(SECRET),
        )
        await create_topics(settings)
        async with served(intake_app(settings)) as intake, served(metrics_app(settings)) as m:
            yield Served({"intake": intake, "metrics": m}, settings.database_url or "")


async def call(
    system: Served, endpoint: Endpoint, headers: dict[str, str], **options: Any
) -> httpx.Response:
    """One request to `endpoint`; a POST carries a valid report for SOURCE."""
    if endpoint.method == "POST" and "json" not in options:
        options["json"] = report(SOURCE, f"access-{uuid.uuid4().hex[:12]}")
    async with httpx.AsyncClient(base_url=system.urls[endpoint.service], timeout=10) as client:
        return await client.request(endpoint.method, endpoint.path, headers=headers, **options)


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["type"].startswith("https://helpline.example/problems/")
    assert body["title"]
    assert body["detail"]
    return body


def wrong_scope_keys(endpoint: Endpoint) -> list[tuple[tuple[str, ...], str | None]]:
    """Keys lacking the endpoint's scope: every other single scope (admin implies nothing)."""
    others = [s for s in apikeys.SCOPES if s != endpoint.scope]
    if endpoint.scope == "read":
        others.remove("practitioner")  # practitioner implies read
    return [((s,), SOURCE if s == "submit" else None) for s in others]


@pytest.mark.parametrize("endpoint", KEYED, ids=str)
async def test_no_key_is_401_missing(system: Served, endpoint: Endpoint) -> None:
    answer = await call(system, endpoint, {})

    body = assert_problem(answer, 401)
    assert body["reason"] == "missing"
    assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("endpoint", KEYED, ids=str)
async def test_malformed_and_unknown_keys_are_401_invalid(
    system: Served, endpoint: Endpoint
) -> None:
    real = await system.key(endpoint.scope, source=SOURCE if endpoint.scope == "submit" else None)
    key_id = real.split("_")[1]
    sent = [
        "Bearer",  # no key
        "Bearer not-a-key",
        f"Basic {real}",  # not the Bearer scheme
        real,  # no scheme at all
        f"Bearer {real[:-1]}",  # cut short
        f"Bearer hk_{key_id}_{'A' * 43}",  # the key's id with a wrong secret
        f"Bearer hk_{'0' * 12}_{'A' * 43}",  # well formed, unknown id
    ]
    for header in sent:
        answer = await call(system, endpoint, {"Authorization": header})

        body = assert_problem(answer, 401)
        assert body["reason"] == "invalid or revoked", header
        assert answer.headers["www-authenticate"] == "Bearer"
        assert real not in answer.text


@pytest.mark.parametrize("endpoint", KEYED, ids=str)
async def test_a_revoked_key_is_401(system: Served, endpoint: Endpoint) -> None:
    key = await system.key(endpoint.scope, source=SOURCE if endpoint.scope == "submit" else None)
    conn = await asyncpg.connect(system.database_url)
    try:
        assert await apikeys.revoke(conn, key.split("_")[1])
    finally:
        await conn.close()

    body = assert_problem(await call(system, endpoint, bearer(key)), 401)
    assert body["reason"] == "invalid or revoked"


async def test_revoking_a_key_in_use_takes_effect_at_once(system: Served) -> None:
    endpoint = KEYED[1]
    key = await system.key("read")
    assert (await call(system, endpoint, bearer(key))).status_code == 200
    conn = await asyncpg.connect(system.database_url)
    try:
        await apikeys.revoke(conn, key.split("_")[1])
    finally:
        await conn.close()

    assert_problem(await call(system, endpoint, bearer(key)), 401)


@pytest.mark.parametrize("endpoint", KEYED, ids=str)
async def test_a_key_without_the_scope_is_403_naming_it(system: Served, endpoint: Endpoint) -> None:
    for scopes, source in wrong_scope_keys(endpoint):
        key = await system.key(*scopes, source=source)

        answer = await call(system, endpoint, bearer(key))

        body = assert_problem(answer, 403)
        assert body["needed_scope"] == endpoint.scope
        assert f"{endpoint.scope!r}" in body["detail"]
        assert body["key_id"] == key.split("_")[1]
        assert key.split("_", 2)[2] not in answer.text  # never the secret


@pytest.mark.parametrize("endpoint", KEYED, ids=str)
async def test_the_right_scope_is_served(system: Served, endpoint: Endpoint) -> None:
    holders = [(endpoint.scope,)]
    if endpoint.scope == "read":
        holders.append(("practitioner",))
    for scopes in holders:
        key = await system.key(*scopes, source=SOURCE if "submit" in scopes else None)

        answer = await call(system, endpoint, bearer(key))

        assert answer.status_code in (200, 202), answer.text
    if endpoint.path == "/v1/reports":
        assert answer.json()["status"] == "accepted"
    elif endpoint.path == "/dashboard":
        assert "<h1>Helpline dashboard</h1>" in answer.text


async def test_a_submit_key_files_only_for_its_own_source(system: Served) -> None:
    key = await system.key("submit", source="school-a")
    body = report("school-b", f"other-{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(system.database_url)
    try:
        rejections = await conn.fetchval("SELECT count(*) FROM intake.rejections")

        answer = await call(system, KEYED[0], bearer(key), json=body)

        problem = assert_problem(answer, 403)
        assert "'school-a'" in problem["detail"]
        assert problem["key_source"] == "school-a"
        case_id = case_id_for(ReportSubmittedV1.model_validate(body))
        assert not await conn.fetchval(
            "SELECT count(*) FROM intake.accepted_hashes WHERE case_id = $1", case_id
        )
        assert await conn.fetchval("SELECT count(*) FROM intake.rejections") == rejections
        # Its own source, or the same source written with spaces around it, is taken.
        own = report(" school-a ", f"own-{uuid.uuid4().hex[:8]}")
        assert (await call(system, KEYED[0], bearer(key), json=own)).status_code == 202
    finally:
        await conn.close()


async def test_an_invalid_report_is_still_422_with_every_reason(system: Served) -> None:
    key = await system.key("submit", source=SOURCE)

    answer = await call(system, KEYED[0], bearer(key), json={"schema_version": 1})

    assert answer.status_code == 422
    assert {e["loc"] for e in answer.json()["errors"]} >= {"source", "report_id", "reporter"}


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("intake", "/health/live"),
        ("intake", "/health/ready"),
        ("intake", "/metrics"),
        ("intake", "/report"),
        ("intake", "/openapi.json"),
        ("metrics", "/health/live"),
        ("metrics", "/health/ready"),
        ("metrics", "/metrics"),
        ("metrics", "/openapi.json"),
    ],
)
async def test_probes_metrics_the_form_and_the_documents_stay_open(
    system: Served, service: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=system.urls[service]) as client:
        answer = await client.get(path)

    assert answer.status_code == 200, answer.text


async def test_unknown_paths_and_methods_are_problems(system: Served) -> None:
    async with httpx.AsyncClient(base_url=system.urls["metrics"]) as client:
        missing = await client.get("/v1/nothing")
        wrong = await client.delete("/v1/totals")

    assert assert_problem(missing, 404)["type"].endswith("/not-found")
    assert assert_problem(wrong, 405)["type"].endswith("/method-not-allowed")
    assert wrong.headers["allow"] == "GET, HEAD"  # HEAD is GET without the content


async def test_past_the_per_key_limit_is_429_with_retry_after(system: Served) -> None:
    endpoint = KEYED[1]
    key, other = await system.key("read"), await system.key("read")
    for _ in range(PER_KEY):
        assert (await call(system, endpoint, bearer(key))).status_code == 200

    answer = await call(system, endpoint, bearer(key))

    body = assert_problem(answer, 429)
    assert key.split("_")[1] in body["detail"]
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert (await call(system, endpoint, bearer(other))).status_code == 200  # its own bucket


async def test_past_the_per_client_limit_is_429_even_without_a_key(system: Served) -> None:
    """Per client address (the socket peer, not X-Forwarded-For), before the key is read,
    so guessing keys is limited too. In process, to give each client its own address."""
    settings = Settings(rate_limit_per_client="3/minute", rate_limit_per_key="1000/minute")
    db = Database(system.database_url)
    await db.open()
    key = await system.key("read")
    api = metrics_api(db, Access(db, settings))

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=api, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://metrics")

    try:
        async with client("192.0.2.1") as one, client("192.0.2.2") as two:
            for _ in range(3):
                assert (await one.get("/v1/totals", headers=bearer(key))).status_code == 200
            spoofed = {**bearer(key), "X-Forwarded-For": "198.51.100.7"}

            limited = await one.get("/v1/totals", headers=spoofed)
            keyless = await one.get("/v1/totals")
            other = await two.get("/v1/totals", headers=bearer(key))
    finally:
        await db.close()

    assert "client address" in assert_problem(limited, 429)["detail"]
    assert int(limited.headers["retry-after"]) >= 1
    assert_problem(keyless, 429)
    assert other.status_code == 200


async def test_the_dashboard_takes_a_sign_in_session_of_a_live_reader(system: Served) -> None:
    sessions = Sessions(Settings(session_secret=SecretStr(SECRET)))
    key = await system.key("practitioner")
    key_id = key.split("_")[1]
    cookie = sessions.issue(key_id)
    admin_cookie = sessions.issue((await system.key("admin")).split("_")[1])
    forged = Sessions(Settings(session_secret=SecretStr(OTHER_SECRET))).issue(key_id)

    async def dashboard(value: str) -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=system.urls["metrics"], cookies={SESSION_COOKIE: value}
        ) as client:
            return await client.get("/dashboard")

    assert (await dashboard(cookie)).status_code == 200
    assert_problem(await dashboard(cookie[:-2] + "xx"), 401)
    assert_problem(await dashboard(forged), 401)
    assert assert_problem(await dashboard(admin_cookie), 403)["needed_scope"] == "read"
    conn = await asyncpg.connect(system.database_url)
    try:
        await apikeys.revoke(conn, key_id)
    finally:
        await conn.close()
    assert_problem(await dashboard(cookie), 401)  # at once


def test_sessions_and_csrf_tokens_are_signed() -> None:
    sessions = Sessions(Settings(session_secret=SecretStr(SECRET)))
    other = Sessions(Settings(session_secret=SecretStr(OTHER_SECRET)))
    cookie = sessions.issue("0123456789ab")

    assert sessions.read(cookie) == "0123456789ab"
    assert other.read(cookie) is None
    assert sessions.read(cookie + "x") is None
    assert sessions.read(None) is None
    kwargs = sessions.cookie_kwargs()
    assert kwargs["httponly"] is True
    assert kwargs["samesite"] == "lax"
    assert kwargs["path"] == "/"
    value, token = sessions.csrf_pair()
    assert sessions.csrf_ok(value, token)
    assert not sessions.csrf_ok(value, value)  # the cookie itself is no token
    assert not sessions.csrf_ok(sessions.csrf_pair()[0], token)  # another cookie's token
    assert not other.csrf_ok(value, token)
    assert not sessions.csrf_ok(None, token)
    assert not sessions.csrf_ok(value, "")


async def test_the_dev_key_is_kept_private_and_reused_while_live(
    infra: Infra, tmp_path: Path
) -> None:
    url = await fresh_database(infra, "helpline_devkey")
    first = await dev_key(url, tmp_path)
    kept = tmp_path / "dev-key"

    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert kept.read_text().strip() == first
    assert await dev_key(url, tmp_path) == first
    conn = await asyncpg.connect(url)
    try:
        info = await apikeys.verify(conn, first)
        assert info is not None
        assert info.scopes == frozenset(apikeys.SCOPES)
        assert info.source == "dev"
        await apikeys.revoke(conn, info.key_id)
    finally:
        await conn.close()
    second = await dev_key(url, tmp_path)
    assert second != first
    assert kept.read_text().strip() == second
    kept.chmod(0o644)
    assert await dev_key(url, tmp_path) == second
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # tightened again when reused


async def test_without_the_key_store_requests_fail_closed_as_a_500_problem(
    system: Served,
) -> None:
    """A key that cannot be checked is never let through; the answer says nothing of why."""
    db = Database(system.database_url)  # never opened: every key check fails
    key = await system.key("read")
    api = metrics_api(db, Access(db, Settings()))
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        answer = await client.get("/v1/totals", headers=bearer(key))

    body = assert_problem(answer, 500)
    assert "pool" not in answer.text
    assert body["type"].endswith("/internal")
