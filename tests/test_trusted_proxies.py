"""Behind a reverse proxy: X-Forwarded-For names the client only when it comes from a proxy
named in HELPLINE_TRUSTED_PROXIES; by default the socket peer is the client."""

from __future__ import annotations

import asyncio

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from helpline_cli.infra import free_port
from helpline_shared.service import server_config
from helpline_shared.settings import Settings
from helpline_shared.webapi import client_address


async def _client_seen(settings: Settings, forwarded_for: str) -> str:
    async def who(request: Request) -> PlainTextResponse:
        return PlainTextResponse(client_address(request))

    port = free_port()
    app = Starlette(routes=[Route("/who", who)])
    server = uvicorn.Server(server_config(app, settings, port))
    task = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                try:
                    answer = await client.get("/who", headers={"X-Forwarded-For": forwarded_for})
                    return answer.text
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise AssertionError("the server never answered")
    finally:
        server.should_exit = True
        await task


async def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted() -> None:
    assert await _client_seen(Settings(), "203.0.113.9") == "127.0.0.1"


async def test_a_trusted_proxy_names_the_client() -> None:
    trusted = Settings(trusted_proxies="127.0.0.1")
    assert await _client_seen(trusted, "203.0.113.9") == "203.0.113.9"


async def test_a_proxy_outside_the_trusted_networks_is_not_believed() -> None:
    elsewhere = Settings(trusted_proxies="10.0.0.0/8")
    assert await _client_seen(elsewhere, "203.0.113.9") == "127.0.0.1"
