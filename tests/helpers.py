"""Helpers shared by the tests: an in-process simulator server and reading a topic."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer

from helpline_cli.infra import free_port
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
