"""The simulator's HTTP server: each platform's notice endpoint plus a control API.

Per platform `<slug>` (see `platforms.py` for each one's credentials and notice shape):
- every call must carry the platform's expected credentials in its own style, else 401;
- `POST /<slug>/v1/notices` accepts a notice of exactly the platform's shape (else 400
  naming the field), answers 201 `{"reference", "status"}`; the status is a decision when
  the decision delay is 0;
- `GET /<slug>/v1/notices/<reference>` answers its status (a decision once due);
- `GET /<slug>/v1/notices?<lookup parameter>=...` finds a notice by the sender's reference
  (the parameter is named like the platform's reference field, e.g. `external_id`).
Decisions are seeded: the same seed and client reference always get the same decision.
Latency, 503s and 429s (with `Retry-After`) are injected as configured, globally or per
platform (`platforms`: e.g. one platform slow and 429-heavy, the others normal), and so are the
two fates of a notice whose sender cannot tell whether it arrived: "stored, but the reply
was lost" (`lost_reply_rate`: the connection drops mid-reply after the notice is received)
and "stored late" (`store_delay_ms`: a received notice is found by lookup only later).
Every notice received is counted per client reference at once, whatever its fate, so
`/_sim/stats` shows any reference sent twice.
Control: `GET /_sim/stats` (submissions counted per platform and per client reference,
answers counted per platform and status), `POST /_sim/config` (change the behaviour at run
time; `{"platforms": {"<slug>": {...}}}` changes one platform's, `null` clears it),
`POST /_sim/reset`.
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
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from helpline_shared.settings import Settings
from helpline_simulator.credentials import authorised, dev_credential
from helpline_simulator.platforms import PLATFORMS, PlatformSpec, pick, shape_error
from helpline_simulator.settings import (
    CREDENTIAL_FIELDS,
    platforms_from_environment,
    validate_behaviour,
    validate_global,
)


@dataclass(frozen=True)
class SimConfig:
    seed: int = 2024
    latency_ms: float = 20.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    decision_delay_ms: float = 0.0
    takedown_rate: float = 0.942
    status_override: str = ""  # answer this status word for every notice (a new vocabulary)
    lost_reply_rate: float = 0.0  # share of received notices whose reply is dropped
    store_delay_ms: float = 0.0  # time before a received notice is stored (found by lookup)
    retry_after_s: float = 1.0  # the Retry-After of a 429
    # Per platform: behaviour that departs from the values above, and the credentials it
    # expects (`credentials`, `client_id`, `client_secret`; default: the dev ones).
    platforms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of(self, slug: str) -> SimConfig:
        """The behaviour of one platform: the global values with its own in their place."""
        own = self.platforms.get(slug)
        if not own:
            return self
        return replace(self, **{k: v for k, v in own.items() if k not in CREDENTIAL_FIELDS})

    def expects(self, slug: str, name: str) -> str:
        """The credential `name` the platform expects."""
        value = self.platforms.get(slug, {}).get(name)
        return str(value) if value else dev_credential(slug, name)

    def changed(self, changes: dict[str, Any]) -> SimConfig:
        """The configuration with `changes` applied; `platforms` merges into each named
        platform's own values (`null` clears them). Raises on an unknown or invalid one."""
        if not isinstance(changes, dict):
            raise ValueError("a change is an object of settings")
        changes = dict(changes)
        own_changes = changes.pop("platforms", None) or {}
        if not isinstance(own_changes, dict):
            raise ValueError("platforms must map each platform to its changes")
        changes = validate_global(changes)
        platforms = {slug: dict(own) for slug, own in self.platforms.items()}
        for slug, own in own_changes.items():
            if own is None:
                platforms.pop(slug, None)
            else:
                platforms[slug] = validate_behaviour(slug, {**platforms.get(slug, {}), **own})
        return replace(self, **changes, platforms=platforms)

    def shown(self) -> dict[str, Any]:
        """The configuration without the credentials' values."""
        data = asdict(self)
        data["platforms"] = {
            slug: {k: ("***" if k in CREDENTIAL_FIELDS else v) for k, v in own.items()}
            for slug, own in self.platforms.items()
        }
        return data

    @classmethod
    def from_settings(cls, s: Settings) -> SimConfig:
        """The global behaviour from the settings; each platform's from the environment
        (`helpline_simulator.settings`)."""
        return cls(
            seed=s.simulator_seed,
            latency_ms=s.simulator_latency_ms,
            error_rate=s.simulator_error_rate,
            rate_limit_rate=s.simulator_rate_limit_rate,
            decision_delay_ms=s.simulator_decision_delay_ms,
            takedown_rate=s.simulator_takedown_rate,
            lost_reply_rate=s.simulator_lost_reply_rate,
            store_delay_ms=s.simulator_store_delay_ms,
            platforms=platforms_from_environment(),
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
    received: int = 0
    lost_replies: int = 0

    answers: dict[str, dict[str, int]] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget every notice and count (the behaviour stays as configured)."""
        self.notices.clear()
        self.by_client_reference.clear()
        self.submissions.clear()
        self.per_client_reference.clear()
        self.answers.clear()
        self.malformed.clear()
        self.received = self.lost_replies = 0

    def answered(self, slug: str, status: int) -> None:
        per = self.answers.setdefault(slug, {})
        per[str(status)] = per.get(str(status), 0) + 1

    def reply(
        self, slug: str, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        """An answer from `slug`, counted per platform and status."""
        self.answered(slug, status)
        return JSONResponse(body, status_code=status, headers=headers)

    def view(self, n: Notice) -> dict[str, Any]:
        spec = PLATFORMS[n.platform]
        status = n.decision if time.monotonic() >= n.decided_at else spec.pending
        status = self.config.status_override or status
        return {
            "reference": n.reference,
            "status": status,
            "url": n.url,
            "client_reference": n.client_reference,
            "category": n.category,
            "dsa_category": n.dsa_category,
        }

    def receive(
        self, slug: str, client_reference: str, url: str, category: str, dsa_category: str
    ) -> Notice:
        """Count a received notice at once; store it (visible to lookups) now, or after
        `store_delay_ms`."""
        config = self.config.of(slug)
        self.submissions[slug] = self.submissions.get(slug, 0) + 1
        self.per_client_reference[client_reference] = (
            self.per_client_reference.get(client_reference, 0) + 1
        )
        self.received += 1
        notice = Notice(
            f"{slug}-{self.received:08d}",
            slug,
            client_reference,
            url,
            time.monotonic() + config.decision_delay_ms / 1000,
            _decide(PLATFORMS[slug], config, client_reference),
            category,
            dsa_category,
        )

        def store() -> None:
            self.notices[notice.reference] = notice
            self.by_client_reference[(slug, client_reference)] = notice.reference

        if self.config.store_delay_ms:
            asyncio.get_running_loop().call_later(self.config.store_delay_ms / 1000, store)
        else:
            store()
        return notice


class LostReply(Response):
    """A reply that starts (201, a body promised) and is cut off: the client sees the
    connection drop after the platform received the notice."""

    def __init__(self) -> None:
        super().__init__(status_code=201)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ref', "more_body": True})
        # Returning without the rest makes the server close the connection.


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

    async def behave(spec: PlatformSpec, request: Request) -> JSONResponse | None:
        c = state.config.of(spec.slug)
        if c.latency_ms:
            await asyncio.sleep(state.rng.uniform(0.5, 1.5) * c.latency_ms / 1000)
        if not authorised(spec, request.headers, state.config.expects):
            return state.reply(spec.slug, {"error": "invalid credentials"}, 401)
        roll = state.rng.random()
        if roll < c.rate_limit_rate:
            retry_after = {"Retry-After": f"{c.retry_after_s:g}"}
            return state.reply(spec.slug, {"error": "rate limited"}, 429, retry_after)
        if roll < c.rate_limit_rate + c.error_rate:
            return state.reply(spec.slug, {"error": "temporarily unavailable"}, 503)
        return None

    async def notices(request: Request) -> Response:
        slug = request.path_params["platform"]
        if slug not in PLATFORMS:
            return JSONResponse({"error": f"unknown platform {slug}"}, status_code=404)
        spec = PLATFORMS[slug]
        if (refused := await behave(spec, request)) is not None:
            return refused
        if request.method == "GET":
            client_reference = request.query_params.get(spec.lookup_param)
            if client_reference is None:
                return state.reply(slug, {"error": f"needs {spec.lookup_param}"}, 400)
            ref = state.by_client_reference.get((slug, client_reference))
            if ref is None:
                return state.reply(slug, {"error": "not found"}, 404)
            return state.reply(slug, state.view(state.notices[ref]))
        try:
            body = await request.json()
        except ValueError:
            body = None
        if (error := shape_error(spec, body)) is not None:
            state.malformed[slug] = state.malformed.get(slug, 0) + 1
            return state.reply(slug, {"error": "invalid notice", "detail": error}, 400)
        notice = state.receive(
            slug,
            str(pick(body, spec.ref)),
            str(pick(body, spec.url)),
            str(pick(body, spec.code)),
            str(pick(body, spec.dsa)),
        )
        if state.rng.random() < state.config.lost_reply_rate:
            state.lost_replies += 1
            return LostReply()
        return state.reply(slug, state.view(notice), 201)

    async def notice(request: Request) -> JSONResponse:
        slug = request.path_params["platform"]
        if slug not in PLATFORMS:
            return JSONResponse({"error": f"unknown platform {slug}"}, status_code=404)
        if (refused := await behave(PLATFORMS[slug], request)) is not None:
            return refused
        n = state.notices.get(request.path_params["reference"])
        if n is None or n.platform != slug:
            return state.reply(slug, {"error": "not found"}, 404)
        return state.reply(slug, state.view(n))

    async def stats(_: Request) -> JSONResponse:
        repeats = {k: v for k, v in state.per_client_reference.items() if v > 1}
        return JSONResponse(
            {
                "submissions": sum(state.submissions.values()),
                "by_platform": state.submissions,
                "distinct_client_references": len(state.per_client_reference),
                "repeated_client_references": repeats,
                "per_client_reference": state.per_client_reference,
                "lost_replies": state.lost_replies,
                "answers_by_platform": state.answers,
                "malformed_by_platform": state.malformed,
                "config": state.config.shown(),
            }
        )

    async def configure(request: Request) -> JSONResponse:
        try:
            changes = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        try:
            state.config = state.config.changed(changes)
        except (TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(state.config.shown())

    async def reset(_: Request) -> JSONResponse:
        state.reset()
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
