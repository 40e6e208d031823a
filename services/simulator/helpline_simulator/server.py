"""The simulator's HTTP server: each platform's notice endpoint plus a control API.

Per platform `<slug>`:
- `POST /<slug>/v1/notices` accepts a notice (needs `client_reference` and `url`), answers
  201 `{"reference", "status"}`; the status is a decision when the decision delay is 0;
- `GET /<slug>/v1/notices/<reference>` answers its status (a decision once due);
- `GET /<slug>/v1/notices?client_reference=...` finds a notice by the sender's reference.
Decisions are seeded: the same seed and client reference always get the same decision.
Latency, 503s and 429s (with `Retry-After`) are injected as configured.
Control: `GET /_sim/stats` (submissions counted per platform and per client reference),
`POST /_sim/config` (change the behaviour at run time), `POST /_sim/reset`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helpline_shared.settings import Settings
from helpline_simulator.platforms import PLATFORMS, PlatformSpec


@dataclass(frozen=True)
class SimConfig:
    seed: int = 2024
    latency_ms: float = 20.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    decision_delay_ms: float = 0.0
    takedown_rate: float = 0.942
    status_override: str = ""  # answer this status word for every notice (a new vocabulary)

    @classmethod
    def from_settings(cls, s: Settings) -> SimConfig:
        return cls(
            seed=s.simulator_seed,
            latency_ms=s.simulator_latency_ms,
            error_rate=s.simulator_error_rate,
            rate_limit_rate=s.simulator_rate_limit_rate,
            decision_delay_ms=s.simulator_decision_delay_ms,
            takedown_rate=s.simulator_takedown_rate,
        )


@dataclass
class Notice:
    reference: str
    platform: str
    client_reference: str
    url: str
    decided_at: float
    decision: str
    category: str = ""
    dsa_category: str = ""


@dataclass
class SimState:
    config: SimConfig
    notices: dict[str, Notice] = field(default_factory=dict)
    by_client_reference: dict[tuple[str, str], str] = field(default_factory=dict)
    submissions: dict[str, int] = field(default_factory=dict)
    per_client_reference: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)


def _decide(spec: PlatformSpec, config: SimConfig, client_reference: str) -> str:
    digest = hashlib.sha256(f"{config.seed}|{client_reference}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    pick = digest[8]
    if draw < config.takedown_rate:
        # Mostly the first takedown status; the others now and then.
        return spec.takedowns[0] if pick < 200 else spec.takedowns[pick % len(spec.takedowns)]
    return spec.other[0] if pick < 160 else spec.other[pick % len(spec.other)]


def create_simulator(config: SimConfig) -> Starlette:
    state = SimState(config, rng=random.Random(config.seed))

    async def behave() -> JSONResponse | None:
        c = state.config
        if c.latency_ms:
            await asyncio.sleep(state.rng.uniform(0.5, 1.5) * c.latency_ms / 1000)
        roll = state.rng.random()
        if roll < c.rate_limit_rate:
            return JSONResponse(
                {"error": "rate limited"}, status_code=429, headers={"Retry-After": "1"}
            )
        if roll < c.rate_limit_rate + c.error_rate:
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
        return None

    def view(n: Notice) -> dict[str, Any]:
        spec = PLATFORMS[n.platform]
        status = n.decision if time.monotonic() >= n.decided_at else spec.pending
        status = state.config.status_override or status
        return {
            "reference": n.reference,
            "status": status,
            "url": n.url,
            "client_reference": n.client_reference,
            "category": n.category,
            "dsa_category": n.dsa_category,
        }

    async def notices(request: Request) -> JSONResponse:
        slug = request.path_params["platform"]
        if slug not in PLATFORMS:
            return JSONResponse({"error": f"unknown platform {slug}"}, status_code=404)
        if (refused := await behave()) is not None:
            return refused
        if request.method == "GET":
            client_reference = request.query_params.get("client_reference", "")
            ref = state.by_client_reference.get((slug, client_reference))
            if ref is None:
                return JSONResponse({"error": "not found"}, status_code=404)
            return JSONResponse(view(state.notices[ref]))
        try:
            body = await request.json()
            client_reference = str(body["client_reference"])
            url = str(body["url"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": "a notice needs client_reference and url"}, status_code=400
            )
        state.submissions[slug] = state.submissions.get(slug, 0) + 1
        state.per_client_reference[client_reference] = (
            state.per_client_reference.get(client_reference, 0) + 1
        )
        ref = f"{slug}-{len(state.notices) + 1:08d}"
        notice = Notice(
            ref,
            slug,
            client_reference,
            url,
            time.monotonic() + state.config.decision_delay_ms / 1000,
            _decide(PLATFORMS[slug], state.config, client_reference),
            str(body.get("category", "")),
            str(body.get("dsa_category", "")),
        )
        state.notices[ref] = notice
        state.by_client_reference[(slug, client_reference)] = ref
        return JSONResponse(view(notice), status_code=201)

    async def notice(request: Request) -> JSONResponse:
        slug = request.path_params["platform"]
        if (refused := await behave()) is not None:
            return refused
        n = state.notices.get(request.path_params["reference"])
        if n is None or n.platform != slug:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(view(n))

    async def stats(_: Request) -> JSONResponse:
        repeats = {k: v for k, v in state.per_client_reference.items() if v > 1}
        return JSONResponse(
            {
                "submissions": sum(state.submissions.values()),
                "by_platform": state.submissions,
                "distinct_client_references": len(state.per_client_reference),
                "repeated_client_references": repeats,
                "config": asdict(state.config),
            }
        )

    async def configure(request: Request) -> JSONResponse:
        changes = await request.json()
        try:
            state.config = replace(state.config, **changes)
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(state.config))

    async def reset(_: Request) -> JSONResponse:
        state.notices.clear()
        state.by_client_reference.clear()
        state.submissions.clear()
        state.per_client_reference.clear()
        return JSONResponse({"status": "reset"})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/{platform}/v1/notices", notices, methods=["GET", "POST"]),
            Route("/{platform}/v1/notices/{reference}", notice, methods=["GET"]),
            Route("/_sim/stats", stats, methods=["GET"]),
            Route("/_sim/config", configure, methods=["POST"]),
            Route("/_sim/reset", reset, methods=["POST"]),
            Route("/health/live", health, methods=["GET"]),
            Route("/health/ready", health, methods=["GET"]),
        ]
    )
