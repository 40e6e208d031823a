"""Session fixtures: real broker and PostgreSQL (see tests/infra.py), one database per use."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from helpline_cli.infra import create_database
from helpline_shared.db import Database, create_pool, migrate
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from tests.infra import Infra, infrastructure


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with infrastructure(tmp_path_factory.mktemp("infra")) as found:
        yield found


def pytest_report_header() -> str:
    return "helpline: broker and database from HELPLINE_* if set, else Docker, else embedded"


async def fresh_database(infra: Infra, prefix: str) -> str:
    url = await create_database(infra.database_url, f"{prefix}_{uuid.uuid4().hex[:8]}")
    await migrate(url)
    return url


@contextlib.asynccontextmanager
async def opened_database(infra: Infra, prefix: str) -> AsyncIterator[Database]:
    """A fresh, migrated database, opened for the block and closed after it."""
    database = Database(await fresh_database(infra, prefix))
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="session")
async def unit_db_url(infra: Infra) -> str:
    return await fresh_database(infra, "helpline_unit")


@pytest.fixture
async def pool(unit_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(unit_db_url)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture(scope="session")
async def topics_settings(infra: Infra) -> Settings:
    settings = Settings(kafka_bootstrap_servers=infra.bootstrap_servers)
    await create_topics(settings)
    return settings


@pytest.fixture(scope="session")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helpline")
