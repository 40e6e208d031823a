"""Helpers shared by the tests: an in-process simulator server, reading a topic, and API
keys (made in the test's database as `helpline keys create` makes them) with clients that
send them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer

from helpline_cli.infra import free_port
from helpline_shared import apikeys
from helpline_simulator.server import SimConfig, create_simulator


@contextlib.asynccontextmanager
async def serve_simulator() -> AsyncIterator[str]:
    """The platform simulator on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_simulator(SimConfig(latency_ms=0)),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done(), "the simulator stopped while starting"
        assert time.monotonic() < deadline, "the simulator did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def read_topic(
    servers: str,
    topic: str,
    *,
    keep: Callable[[Any], bool] = lambda _: True,
    expected: int | None = None,
    timeout_s: float = 30.0,
) -> list[Any]:
    """Every record of `topic` from the start that `keep` accepts, read until `expected`
    are found or, without `expected`, until a second passes with nothing new."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if expected is not None and len(out) >= expected:
                break
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch and expected is None:
                break
            for records in batch.values():
                out += [r for r in records if keep(r)]
    finally:
        await consumer.stop()
    return out


EVERY_SCOPE = apikeys.SCOPES


async def create_key(
    database_url: str, *scopes: str, source: str | None = None, name: str = "tests"
) -> str:
    """A new API key with `scopes` (a submit key bound to `source`); returns the plaintext."""
    conn = await asyncpg.connect(database_url)
    try:
        _, key = await apikeys.create(conn, scopes, source, name, "tests")
    finally:
        await conn.close()
    return key


_every_scope: dict[tuple[str, str], str] = {}


async def every_scope_key(database_url: str, source: str = "tests") -> str:
    """A key with every scope, submitting for `source`: one per database and source, made
    on first use (tests that revoke a key make their own with `create_key`)."""
    if (database_url, source) not in _every_scope:
        _every_scope[database_url, source] = await create_key(
            database_url, *EVERY_SCOPE, source=source, name="every scope"
        )
    return _every_scope[database_url, source]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keyed_client(base_url: str = "", key: str = "", **options: Any) -> httpx.AsyncClient:
    """An httpx client for `base_url` sending `key` on every request."""
    headers = {**bearer(key), **options.pop("headers", {})}
    return httpx.AsyncClient(base_url=base_url, headers=headers, **options)
