"""Turning a FastStream broker into a runnable service with health probes.

`GET /health/live` answers while the event loop runs. `GET /health/ready` answers 200 only
when every readiness check passes (broker reachable, database reachable, no dead-letter
limit tripped), 503 with the failing checks otherwise. SIGTERM (via uvicorn) stops accepting
HTTP, stops the subscribers after in-flight batches finish (bounded by
`graceful_timeout_s`), runs the shutdown hooks and exits.

The probes, `/metrics` and any exact-path `routes` are served by FastStream itself; every
other HTTP path goes to the service's `api` (a FastAPI app, see
:mod:`helpline_shared.webapi`) when it has one. The `api`'s own lifespan is not run:
resources belong in the service's startup and shutdown hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import uvicorn
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings

ReadinessCheck = Callable[[], Awaitable[bool]]
ReadinessDetail = Callable[[], Any]  # extra facts for `/health/ready` that decide nothing
Hook = Callable[[], Awaitable[None]]


def endpoint(handler: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """Wrap a Starlette-style request handler as a plain ASGI app for AsgiFastStream routes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)

    return app


def broker_check(broker: KafkaBroker, timeout_s: float = 2.0) -> ReadinessCheck:
    async def check() -> bool:
        return bool(await broker.ping(timeout=timeout_s))

    return check


def health_routes(
    checks: dict[str, ReadinessCheck], details: dict[str, ReadinessDetail] | None = None
) -> list[tuple[str, ASGIApp]]:
    async def live(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(_: Request) -> Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), 3.0)
            except Exception:
                results[name] = False
        ok = all(results.values())
        body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": results}
        if details:
            body["details"] = {name: detail() for name, detail in details.items()}
        return JSONResponse(
            body,
            status_code=200 if ok else 503,
        )

    return [("/health/live", endpoint(live)), ("/health/ready", endpoint(ready))]


class ServiceApp(AsgiFastStream):
    """AsgiFastStream whose unrouted HTTP requests go to `api` (404 without one)."""

    api: ASGIApp | None = None

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api is not None and scope["type"] in ("http", "websocket"):
            await self.api(scope, receive, send)
            return
        await super().not_found(scope, receive, send)


def build_app(
    broker: KafkaBroker,
    *,
    service: str,
    routes: Sequence[tuple[str, ASGIApp]] = (),
    checks: dict[str, ReadinessCheck] | None = None,
    details: dict[str, ReadinessDetail] | None = None,
    on_startup: Sequence[Hook] = (),
    after_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    after_shutdown: Sequence[Hook] = (),
    api: ASGIApp | None = None,
) -> AsgiFastStream:
    """An ASGI FastStream app: the broker's subscribers plus health probes and `routes`;
    any other path is answered by `api` when given."""
    all_checks = {"broker": broker_check(broker), **(checks or {})}
    app = ServiceApp(
        broker,
        asgi_routes=[*health_routes(all_checks, details), *routes],
        logger=get_logger(f"helpline.{service}"),
        on_startup=list(on_startup),
        after_startup=list(after_startup),
        on_shutdown=list(on_shutdown),
        after_shutdown=list(after_shutdown),
    )
    app.api = api
    return app


class _Server(uvicorn.Server):
    """uvicorn, except that a graceful stop on SIGTERM/SIGINT exits with status 0.

    (uvicorn re-raises the signal after shutting down, so the process would report being
    killed by it even though it drained cleanly.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def server_config(app: Any, settings: Settings, port: int) -> uvicorn.Config:
    """How `helpline run` serves `app`: uvicorn on `settings.http_host:port`."""
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        # X-Forwarded-For is trusted only from the proxies named in HELPLINE_TRUSTED_PROXIES
        # (uvicorn takes the client address from it then): see webapi.client_address.
        proxy_headers=settings.trusted_proxies is not None,
        forwarded_allow_ips=settings.trusted_proxies,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
    )


async def serve(app: Any, settings: Settings, port: int) -> None:
    """Serve `app` until SIGTERM or SIGINT, then shut down gracefully."""
    server = _Server(server_config(app, settings, port))
    await server.serve()
    if getattr(server, "should_exit", False) and not server.started:
        raise SystemExit(1)
