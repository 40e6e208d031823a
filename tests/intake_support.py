"""What intake's tests share: a report, a consumed record, intake's HTTP routes in process."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker
from starlette.types import ASGIApp, Receive, Scope, Send

from helpline_intake.form import build_form_routes
from helpline_intake.http import build_api
from helpline_intake.usecase import Intake
from helpline_shared.consumer import DeadLetters
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from helpline_shared.webapi import Access
from tests.conftest import fresh_database
from tests.helpers import create_key, read_topic
from tests.infra import Infra

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "report.json"


def report(source: str, report_id: str = "r1", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.update(source=source, report_id=report_id, **changes)
    return data


def record(offset: int, value: bytes, key: bytes = b"k") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        "helpline.reports.submitted", 0, offset, 0, 0, key, value, None, 1, len(value), ()
    )


def original(r: Any) -> bytes:
    """The refused bytes a `helpline.reports.rejected` record carries, else nothing."""
    try:
        return base64.b64decode(json.loads(r.value).get("original_base64") or "")
    except (ValueError, AttributeError):
        return b""


def routes_app(broker: KafkaBroker, db: Database) -> ASGIApp:
    """Intake's HTTP routes (the form's exact routes, then the keyed API) as one ASGI app,
    as the service app mounts them; rate limits high enough never to matter here."""
    table = dict(build_form_routes(broker, db))
    settings = Settings(rate_limit_per_key="100000/minute", rate_limit_per_client="100000/minute")
    api = build_api(broker, db, Access(db, settings))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await table.get(scope["path"], api)(scope, receive, send)

    return app


class SourceKeys(httpx.Auth):
    """Acts as each source's own system: sends a submit key bound to the `source` the JSON
    body names (`tests` for any other body), made in the test database on first use."""

    requires_request_body = True

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._keys: dict[str, str] = {}

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        try:
            named = json.loads(request.content).get("source")
        except (ValueError, AttributeError):
            named = None
        source = named.strip() if isinstance(named, str) and named.strip() else "tests"
        if source not in self._keys:
            self._keys[source] = await create_key(self._database_url, "submit", source=source)
        request.headers["Authorization"] = f"Bearer {self._keys[source]}"
        yield request


@dataclass
class IntakeUnderTest:
    service: Intake
    db: Database
    broker: KafkaBroker
    http: httpx.AsyncClient
    servers: str
    database_url: str

    async def topic(self, name: str, marker: str) -> list[Any]:
        """Records of topic `name` whose value, key or refused original holds `marker`."""

        def keep(r: Any) -> bool:
            return marker.encode() in (r.value or b"") + (r.key or b"") + original(r)

        return await read_topic(self.servers, name, keep=keep)


async def intake_under_test(infra: Infra) -> AsyncIterator[IntakeUnderTest]:
    url = await fresh_database(infra, "helpline_intake")
    db = Database(url)
    await db.open()
    broker = KafkaBroker(infra.bootstrap_servers)
    await broker.connect()
    transport = httpx.ASGITransport(app=routes_app(broker, db))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://intake", auth=SourceKeys(url)
        ) as http:
            yield IntakeUnderTest(
                Intake(db, broker, DeadLetters("intake", max_ratio=0.9, window=10)),
                db,
                broker,
                http,
                infra.bootstrap_servers,
                url,
            )
    finally:
        await broker.stop()
        await db.close()
