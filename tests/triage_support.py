"""What triage's tests share: a fresh database and a connected broker for each test, and a
case as intake opens it, alone or as the record triage consumes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from helpline_shared.db import Database
from helpline_shared.events import CaseOpenedV1, HarmType, derive_id
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED
from tests.conftest import opened_database
from tests.infra import Infra

RECEIVED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def database_per_test(prefix: str) -> Any:
    """A fixture: a fresh, migrated database named after `prefix` for each test. Assign it
    to `db` in the module."""

    @pytest.fixture
    async def db(infra: Infra) -> AsyncIterator[Database]:
        async with opened_database(infra, prefix) as database:
            yield database

    return db


def connected_broker() -> Any:
    """A fixture: a broker connected to the test infrastructure's (its topics made) for each
    test. Assign it to `broker` in the module."""

    @pytest.fixture
    async def broker(infra: Infra, topics_settings: Settings) -> AsyncIterator[KafkaBroker]:
        b = KafkaBroker(infra.bootstrap_servers)
        await b.connect()
        yield b
        await b.stop()

    return broker


def case_opened(
    description: str, urls: list[str], issue_types: list[HarmType] | None = None
) -> CaseOpenedV1:
    """A case of its own id, received at `RECEIVED`."""
    case_id = uuid.uuid4()
    return CaseOpenedV1(
        event_id=derive_id("case.opened", case_id),
        case_id=case_id,
        source="test",
        report_id=str(case_id),
        received_at=RECEIVED,
        description=description,
        urls=urls,
        issue_types=issue_types or [],
    )


def case_record(case: CaseOpenedV1, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    """`case` as triage consumes it from `helpline.cases.opened`, keyed by its case id."""
    value, key = case.model_dump_json().encode(), str(case.case_id).encode()
    return ConsumerRecord(
        CASES_OPENED.name, 0, offset, 0, 0, key, value, None, len(key), len(value), []
    )
