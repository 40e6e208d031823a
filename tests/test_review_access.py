"""Access as an outside system or an attacker tries it, on intake, metrics and casework
served over a real broker and PostgreSQL: a key made and revoked with `helpline keys` is
refused at once by every service; HEAD asks for the key as GET does and never carries a
body; odd Authorization headers (scheme in any letter case, very long, not ASCII, trailing
whitespace) are 401 problems, never 500s; filters a timestamp cannot hold are 400 problems;
casework's refusals of malformed bodies are answered as its document declares them."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from faststream.kafka import KafkaBroker

from helpline_casework.app import create_app as casework_app
from helpline_cli import keys
from helpline_intake.app import create_app as intake_app
from helpline_intake.http import build_api as intake_api
from helpline_metrics.app import create_app as metrics_app
from helpline_shared.db import Database
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.webapi import PROBLEM_MEDIA_TYPE, Access
from tests.conftest import fresh_database
from tests.helpers import bearer, create_key
from tests.infra import Infra, dedicated_broker
from tests.intake_support import report
from tests.served import served

SOURCE = "review-access"
CASE = uuid.UUID("00000000-0000-4000-8000-000000000001")
# Every keyed GET endpoint, its service and the scope it needs.
KEYED_GETS = [
    ("metrics", "/v1/totals", "read"),
    ("metrics", "/v1/report?year=2024", "read"),
    ("metrics", "/dashboard", "read"),
    ("casework", f"/v1/cases/{CASE}", "read"),
    ("casework", "/v1/cases", "read"),
    ("casework", "/v1/queue", "read"),
]


@dataclass(frozen=True)
class System:
    urls: dict[str, str]
    database_url: str


@pytest.fixture(scope="module")
async def system(infra: Infra, tmp_dir: Path) -> AsyncIterator[System]:
    with dedicated_broker(infra, tmp_dir) as servers:
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_review_access"),
            rate_limit_per_key="100000/minute",
            rate_limit_per_client="100000/minute",
        )
        await create_topics(settings)
        async with (
            served(intake_app(settings)) as intake,
            served(metrics_app(settings)) as metrics,
            served(casework_app(settings)) as casework,
        ):
            urls = {"intake": intake, "metrics": metrics, "casework": casework}
            yield System(urls, settings.database_url or "")


async def helpline_keys(database_url: str, *args: str) -> tuple[int, str, str]:
    """Runs `helpline keys ...` as an operator does; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "helpline_cli.main",
        "keys",
        *args,
        env={**os.environ, "HELPLINE_DATABASE_URL": database_url},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["type"].startswith("https://helpline.example/problems/")
    assert body["title"]
    assert body["detail"]
    return body


async def every_endpoint(system: System, headers: dict[str, str]) -> dict[str, int]:
    """The status each keyed endpoint answers with `headers` (a report for SOURCE posted)."""
    answers: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for service, path, _ in KEYED_GETS:
            answer = await client.get(system.urls[service] + path, headers=headers)
            answers[f"{service} GET {path}"] = answer.status_code
        posted = await client.post(
            system.urls["intake"] + "/v1/reports",
            headers=headers,
            json=report(SOURCE, f"review-{uuid.uuid4().hex[:12]}"),
        )
        answers["intake POST /v1/reports"] = posted.status_code
    return answers


async def test_a_key_revoked_with_the_command_is_refused_at_once_everywhere(
    system: System,
) -> None:
    code, out, err = await helpline_keys(
        system.database_url,
        "create",
        "--scope",
        "submit,read",
        "--scope",
        "practitioner",
        "--source",
        SOURCE,
        "--name",
        "review",
    )
    assert code == 0, err
    key = out.splitlines()[-1]
    served = await every_endpoint(system, bearer(key))
    # A live key reaches every handler (the one case asked for is simply not known).
    assert served.pop(f"casework GET /v1/cases/{CASE}") == 404
    assert set(served.values()) <= {200, 202}, served

    code, out, err = await helpline_keys(system.database_url, "revoke", key)  # the whole key
    assert code == 0, err
    assert out.strip() == f"key {key.split('_')[1]} revoked"  # its id, never the secret

    refused = await every_endpoint(system, bearer(key))  # no wait: at once, every service
    assert set(refused.values()) == {401}, refused


async def test_head_asks_for_the_key_as_get_does_and_carries_no_body(system: System) -> None:
    reader = await create_key(system.database_url, "read")
    admin = await create_key(system.database_url, "admin")
    async with httpx.AsyncClient(timeout=10) as client:
        for service, path, _ in KEYED_GETS:
            url = system.urls[service] + path
            keyless = await client.head(url)
            wrong = await client.head(url, headers=bearer(admin))
            right = await client.head(url, headers=bearer(reader))
            got = await client.get(url, headers=bearer(reader))

            where = f"HEAD {service} {path}"
            assert keyless.status_code == 401, where
            assert keyless.headers["www-authenticate"] == "Bearer", where
            assert wrong.status_code == 403, where
            assert right.status_code == got.status_code, where
            assert right.headers["content-type"] == got.headers["content-type"], where
            for answer in (keyless, wrong, right):
                assert answer.content == b"", where
            options = await client.options(url)
            assert options.status_code in (401, 405), where
            assert options.json()["type"].startswith("https://helpline.example/problems/"), where


async def test_odd_authorization_headers_are_401_problems(system: System) -> None:
    reader = await create_key(system.database_url, "read")
    url = system.urls["metrics"] + "/v1/totals"
    refused: list[Any] = [
        "Bearer " + "a" * 8000,
        "Bearer hk_" + "a" * 60000,
        f"Bearer {reader} trailing-junk",
        f"Bearer {reader}, Basic Zm9vOmJhcg==",
        "Bearer hk_\u00e9\u00e9".encode("latin-1"),
        f"Bearer {reader[:-2]}\u00e9".encode(),  # UTF-8 bytes in the key
        "Bearer \u00ff".encode("latin-1"),
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):  # RFC 7235: any case
            answer = await client.get(url, headers={"Authorization": f"{scheme} {reader}"})
            assert answer.status_code == 200, scheme
        for header in refused:
            raw = header if isinstance(header, bytes) else header.encode("latin-1")
            answer = await client.get(url, headers=[(b"Authorization", raw)])
            body = assert_problem(answer, 401)
            assert body["reason"] == "invalid or revoked"
            assert answer.headers["www-authenticate"] == "Bearer"
            assert reader not in answer.text


async def test_a_key_sent_with_trailing_whitespace_is_taken(system: System) -> None:
    """httpx will not send trailing whitespace in a header, so this writes the request by
    hand: `Authorization: Bearer <key>  \\t`, as a key pasted from a file may arrive."""
    reader = await create_key(system.database_url, "read")
    address = urlsplit(system.urls["metrics"])
    reader_stream, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(
            (
                "GET /v1/totals HTTP/1.1\r\n"
                f"Host: {address.netloc}\r\n"
                f"Authorization: Bearer {reader}  \t\r\n"
                "Connection: close\r\n\r\n"
            ).encode("ascii")
        )
        await writer.drain()
        response = await asyncio.wait_for(reader_stream.read(), 10)
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 200 OK", response[:300]


@pytest.mark.parametrize(
    "query",
    [
        "/v1/totals?period=0000",
        "/v1/totals?period=9999",
        "/v1/totals?period=0000-01",
        "/v1/totals?period=2024-13",
        "/v1/totals?period=%D9%A1%D9%A2%D9%A3%D9%A4",  # Arabic-Indic digits
        "/v1/report?year=0000",
        "/v1/report?year=9999",
        "/v1/report?year=24",
        "/v1/report?year=2024&format=xml",
    ],
)
async def test_filters_no_timestamp_can_hold_are_400_problems(system: System, query: str) -> None:
    reader = await create_key(system.database_url, "read")
    async with httpx.AsyncClient(base_url=system.urls["metrics"], timeout=10) as client:
        answer = await client.get(query, headers=bearer(reader))

    assert assert_problem(answer, 400)["type"].endswith("/bad-filter")


async def test_text_postgresql_cannot_hold_is_refused_not_a_500(system: System) -> None:
    reader = await create_key(system.database_url, "read")
    async with httpx.AsyncClient(base_url=system.urls["metrics"], timeout=10) as client:
        for query in ("/v1/totals?platform=%00", "/v1/totals?harm_type=a%00b"):
            answer = await client.get(query, headers=bearer(reader))
            assert answer.status_code == 422, (query, answer.text)
        edge = await client.get("/v1/totals?period=9998-12", headers=bearer(reader))
        first = await client.get("/v1/report?year=0001", headers=bearer(reader))
    assert edge.status_code == 200, edge.text
    assert first.status_code == 200, first.text


async def test_casework_refuses_malformed_bodies_as_its_document_declares(
    system: System,
) -> None:
    practitioner = await create_key(system.database_url, "practitioner")
    url = system.urls["casework"]
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=bearer(practitioner)) as c:
        document = (await c.get("/openapi.json")).json()
        for path in (f"/v1/escalations/{CASE}/actions", f"/v1/cases/{CASE}/retriage"):
            template = path.replace(
                str(CASE), "{escalation_id}" if "escal" in path else "{case_id}"
            )
            declared = document["paths"][template]["post"]["responses"]
            answers = [
                await c.post(path),  # no body
                await c.post(path, json={"unknown": 1}),  # not the action's fields
                await c.post(
                    path, content=b"{not json", headers={"content-type": "application/json"}
                ),
                await c.post(  # bytes that are not UTF-8: refused, never a 500
                    path,
                    content=b"\xef\xbf\xbd0J\xff",
                    headers={"content-type": "application/json"},
                ),
            ]
            for answer in answers:
                status = str(answer.status_code)
                assert status in declared, (path, answer.status_code, answer.text)
                media_type = answer.headers["content-type"].split(";")[0]
                assert media_type in declared[status]["content"], (path, status, media_type)
                assert answer.status_code in (400, 422), answer.text


@pytest.mark.parametrize(
    ("setting", "app"),
    [
        ("rate_limit_per_key", intake_app),
        ("rate_limit_per_client", metrics_app),
        ("rate_limit_per_key", casework_app),
    ],
)
def test_a_mistyped_rate_limit_stops_the_service_at_start(setting: str, app: Any) -> None:
    """Not a 500 on every request later: the service is not built, the setting named."""
    settings = Settings(
        database_url="postgresql://unused.invalid/helpline", **{setting: "600 a minute"}
    )
    with pytest.raises(ValueError, match=f"HELPLINE_{setting.upper()}='600 a minute'"):
        app(settings)


async def test_casework_asks_for_the_key_before_reading_a_body(system: System) -> None:
    """Without a key any body, however malformed or large, is the 401; with one, a body
    over the limit is a 413 problem and one of another media type a 415 problem."""
    practitioner = await create_key(system.database_url, "practitioner")
    paths = [f"/v1/escalations/{CASE}/actions", f"/v1/cases/{CASE}/retriage"]
    junk = b"{" * (8 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=system.urls["casework"], timeout=30) as client:
        for path in paths:
            for body in (b"{not json", junk):
                answer = await client.post(
                    path, content=body, headers={"content-type": "application/json"}
                )
                assert assert_problem(answer, 401)["reason"] == "missing", path
            large = await client.post(
                path,
                json={"action": "advice_only", "note": "x" * 70_000},
                headers=bearer(practitioner),
            )
            assert assert_problem(large, 413)["type"].endswith("/too-large"), path
            typed = await client.post(
                path,
                content=b"action=advice_only",
                headers={**bearer(practitioner), "content-type": "text/plain"},
            )
            assert assert_problem(typed, 415)["type"].endswith("/unsupported-media-type")


async def test_no_key_secret_or_reporter_data_reaches_the_logs(
    system: System, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every service's log while keys are used, refused and revoked and a report with a
    reporter is filed, taken by intake and read back with its contacts."""
    submitter = await create_key(system.database_url, "submit", "read", source=SOURCE)
    practitioner = await create_key(system.database_url, "practitioner")
    marker = uuid.uuid4().hex[:10]
    reporter = {"name": f"Ada Lovelace-{marker}", "email": f"ada.{marker}@school.example"}
    body = report(SOURCE, f"logs-{marker}", reporter=reporter)
    capfd.readouterr()  # only what follows
    async with httpx.AsyncClient(timeout=10) as client:
        intake, metrics = system.urls["intake"], system.urls["metrics"]
        assert (
            await client.post(f"{intake}/v1/reports", json=body, headers=bearer(submitter))
        ).status_code == 202
        for headers in (
            bearer(practitioner),  # no submit scope
            bearer(submitter[:-3] + "abc"),  # the right id, a wrong secret
            {"Authorization": f"Basic {submitter}"},
        ):
            await client.post(f"{intake}/v1/reports", json=body, headers=headers)
            await client.get(f"{metrics}/v1/totals", headers=headers)
        code, _, err = await helpline_keys(system.database_url, "revoke", submitter)
        assert code == 0, err
        await client.post(f"{intake}/v1/reports", json=body, headers=bearer(submitter))
        case_url = f"{system.urls['casework']}/v1/cases?source={SOURCE}&report_id=logs-{marker}"
        for _ in range(100):  # until casework has the case with its reporter
            found = await client.get(case_url, headers=bearer(practitioner))
            if found.status_code == 200 and found.json()["reporter"]:
                break
            await asyncio.sleep(0.2)
        assert found.json()["reporter"]["email"] == reporter["email"]
    logs = capfd.readouterr()
    logged = logs.out + logs.err

    assert logged  # the services did log meanwhile
    for secret in (submitter, practitioner):
        assert secret.split("_", 2)[2] not in logged
    for personal in (reporter["name"], reporter["email"]):
        assert personal not in logged, personal


async def test_submissions_are_limited_per_key_and_per_client_address(system: System) -> None:
    """Intake's own API, in process so each client has its own address: a key past its
    limit is a 429 whatever address it comes from, an address past its limit is a 429
    whatever key it sends (or none); each with Retry-After. The requests name another
    source than the key's, so each is answered (403) before anything is published."""
    settings = Settings(rate_limit_per_key="3/minute", rate_limit_per_client="5/minute")
    db = Database(system.database_url)
    await db.open()
    api = intake_api(KafkaBroker("127.0.0.1:9"), db, Access(db, settings))
    one, two, three = [await create_key(system.database_url, "submit", source="s") for _ in "123"]
    body = report("another-source", "r-limits")

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=api, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://intake")

    async def post(c: httpx.AsyncClient, key: str | None) -> httpx.Response:
        return await c.post("/v1/reports", json=body, headers=bearer(key) if key else {})

    try:
        async with client("192.0.2.10") as a, client("192.0.2.11") as b:
            for _ in range(3):
                assert (await post(a, one)).status_code == 403
            by_key = await post(b, one)  # the same key from another address
            assert (await post(a, two)).status_code == 403  # address a: 4 of 5
            assert (await post(a, three)).status_code == 403  # 5 of 5
            by_address = await post(a, three)  # a fresh key from a spent address
            keyless = await post(a, None)
            other = await post(b, three)
    finally:
        await db.close()

    assert "key" in assert_problem(by_key, 429)["detail"]
    assert "client address" in assert_problem(by_address, 429)["detail"]
    assert_problem(keyless, 429)
    for limited in (by_key, by_address, keyless):
        assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert other.status_code == 403  # b and key three are still within their limits


def test_a_key_is_made_where_the_user_has_no_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a container running as a uid with no passwd entry and no USER, getpass fails;
    the key's creator is then recorded as the uid rather than the command failing."""

    def no_login_name() -> str:
        raise KeyError("getpwuid(): uid not found: 4242")

    monkeypatch.setattr(keys.getpass, "getuser", no_login_name)

    assert keys._login_name() == f"uid {os.getuid()}"
