"""A service's ASGI app served in this process on a free port, for tests that drive it
over HTTP and Kafka as its clients do."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from helpline_cli.infra import free_port


@contextlib.asynccontextmanager
async def served(app: Any, *, ready_timeout_s: float = 60) -> AsyncIterator[str]:
    """Serve `app` (with its lifespan) until the block ends; yields its base URL once it
    answers ready."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    try:
        while not server.started:
            assert not task.done(), "the service stopped while starting"
            assert time.monotonic() < deadline, "the service did not start"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=url, timeout=3) as client:
            while (await client.get("/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, "the service never became ready"
                await asyncio.sleep(0.2)
        yield url
    finally:
        server.should_exit = True
        await task
