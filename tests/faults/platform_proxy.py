"""An HTTP proxy in front of the platform simulator that makes one platform misbehave.

The escalator's adapters talk to this proxy (`HELPLINE_PLATFORM_BASE_URL`); requests for
other platforms pass straight through. For the faulty platform it adds latency, answers
429 with `Retry-After` and 503 on a share of calls, and on a share of submits:
- *lost reply*: the notice is stored, then the answer never comes (the caller times out);
- *late store*: the caller times out first, and the notice is stored only afterwards, so
  a lookup made soon after the timeout finds nothing.
It runs on its own event loop in a thread so the test's own waits never slow it down.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class PlatformFaults:
    platform: str = "tiktok"
    latency_s: float = 0.0
    rate_limit_rate: float = 0.0
    unavailable_rate: float = 0.0
    lost_reply_rate: float = 0.0
    late_store_rate: float = 0.0
    hold_s: float = 5.0  # longer than the escalator's platform timeout
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class PlatformProxy:
    def __init__(self, upstream: str, port: int, faults: PlatformFaults) -> None:
        self.upstream = upstream
        self.port = port
        self.faults = faults
        self.enabled = False
        self._rng = random.Random(5)
        self._late: set[asyncio.Task[None]] = set()
        self._server = uvicorn.Server(
            uvicorn.Config(
                Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])]),
                host="127.0.0.1",
                port=port,
                log_config=None,
                lifespan="off",
                access_log=False,
                loop="asyncio",
            )
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._client: httpx.AsyncClient | None = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30.0) as client:
            self._client = client
            await self._server.serve()
            for task in list(self._late):
                task.cancel()
            await asyncio.gather(*self._late, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the platform proxy did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    async def _forward(self, request: Request, body: bytes) -> Response:
        assert self._client is not None
        r = await self._client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=body,
            headers={  # the platform's credentials pass through, as a real proxy's would
                k: v for k, v in request.headers.items() if k not in ("host", "content-length")
            },
        )
        return Response(r.content, r.status_code, media_type="application/json")

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        f = self.faults
        if not self.enabled or not request.url.path.startswith(f"/{f.platform}/"):
            return await self._forward(request, body)
        if f.latency_s:
            await asyncio.sleep(f.latency_s * self._rng.uniform(0.5, 1.5))
        roll = self._rng.random()
        if roll < f.rate_limit_rate:
            f.count("429")
            return JSONResponse({"error": "slow down"}, 429, headers={"Retry-After": "1"})
        roll -= f.rate_limit_rate
        if roll < f.unavailable_rate:
            f.count("503")
            return JSONResponse({"error": "unavailable"}, 503)
        roll -= f.unavailable_rate
        if request.method == "POST":
            if roll < f.lost_reply_rate:
                f.count("lost_reply")
                await self._forward(request, body)
                await asyncio.sleep(f.hold_s)  # the caller gives up first
                return JSONResponse({"error": "too late"}, 504)
            roll -= f.lost_reply_rate
            if roll < f.late_store_rate:
                f.count("late_store")
                task = asyncio.create_task(self._store_late(request, body))
                self._late.add(task)
                task.add_done_callback(self._late.discard)
                await asyncio.sleep(f.hold_s)
                return JSONResponse({"error": "too late"}, 504)
        f.count("passed")
        return await self._forward(request, body)

    async def _store_late(self, request: Request, body: bytes) -> None:
        await asyncio.sleep(self.faults.hold_s * 0.8)  # after the caller's timeout
        await self._forward(request, body)
