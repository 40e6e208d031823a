"""The simulator's HTTP server: each platform's notice endpoint, its follow-up, appeal and
withdrawal routes, the national hotline's reporting endpoint, plus a control API.

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

After a notice, per platform (each body in the platform's own shape, `platforms.py`):
- `POST /<slug>/v1/notices/<reference>/followups`: a re-notification citing the notice's
  reference; 201 `{"reference", "followups", "status"}` with the notice's follow-ups so far.
  It is counted per notice and never creates one: an unknown reference is 404, a withdrawn
  notice 409.
- `POST /<slug>/v1/notices/<reference>/appeals`: contest a "no violation" decision; 201
  `{"reference" (the appeal's), "notice_reference", "status", "overturned"}`, the status
  the pending word until the decision delay has passed, then the new decision: the
  platform's first takedown status when overturned, else the same no-violation word.
  Overturned with probability `appeal_overturn_rate`, drawn from the seed and the notice's
  client reference (the same seed and reference always get the same result). Appealing an
  undecided notice, or a decision other than no violation, is 409; appealing again answers
  the same appeal (200). `GET .../appeals/<appeal reference>` answers it again.
- `POST /<slug>/v1/notices/<reference>/withdrawal`: withdraw an undecided notice (200
  `{"reference", "status": "WITHDRAWN"}`, again 200); a decided one is 409; a platform
  without withdrawal (`PlatformSpec.withdrawal`: Snapchat, Discord) answers 405.
The national hotline: `POST /hotline/v1/reports` with a bearer token (development:
`dev-hotline-credentials`) and `{"client_reference", "url", "platform", "harm_types",
"urgency"}` answers 201 `{"reference", "status": "received", ...}`, and the same
reference (200) to a report with a client reference it already has; `GET
/hotline/v1/reports/<reference>` answers `received`, then `actioned` after the decision
delay.
Control: `GET /_sim/stats` (submissions counted per platform and per client reference,
answers counted per platform and status; `platform_activity`: per platform its notices,
follow-ups in all and per notice reference, appeals, overturns and withdrawals; `hotline`:
its reports in all, per client reference received and per platform), `POST /_sim/config`
(change the behaviour at run time; `{"platforms": {"<slug>": {...}}}` changes one
platform's, `null` clears it), `POST /_sim/reset`.
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
from helpline_simulator.platforms import (
    HOTLINE,
    PLATFORMS,
    PlatformSpec,
    appeal_error,
    followup_error,
    hotline_error,
    pick,
    shape_error,
)
from helpline_simulator.settings import (
    CREDENTIAL_FIELDS,
    hotline_credentials_from_environment,
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
    appeal_overturn_rate: float = 0.3  # share of appeals that overturn the decision
    status_override: str = ""  # answer this status word for every notice (a new vocabulary)
    lost_reply_rate: float = 0.0  # share of received notices whose reply is dropped
    store_delay_ms: float = 0.0  # time before a received notice is stored (found by lookup)
    retry_after_s: float = 1.0  # the Retry-After of a 429
    # Per platform: behaviour that departs from the values above, and the credentials it
    # expects (`credentials`, `client_id`, `client_secret`; default: the dev ones).
    platforms: dict[str, dict[str, Any]] = field(default_factory=dict)
    hotline_credentials: str = ""  # the hotline's bearer token; '' the development one

    def of(self, slug: str) -> SimConfig:
        """The behaviour of one platform: the global values with its own in their place."""
        own = self.platforms.get(slug)
        if not own:
            return self
        return replace(self, **{k: v for k, v in own.items() if k not in CREDENTIAL_FIELDS})

    def expects(self, slug: str, name: str) -> str:
        """The credential `name` the platform (or the hotline) expects."""
        if slug == HOTLINE.slug and name == "credentials" and self.hotline_credentials:
            return self.hotline_credentials
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
        data["hotline_credentials"] = "***" if self.hotline_credentials else ""
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
            appeal_overturn_rate=s.simulator_appeal_overturn_rate,
            lost_reply_rate=s.simulator_lost_reply_rate,
            store_delay_ms=s.simulator_store_delay_ms,
            platforms=platforms_from_environment(),
            hotline_credentials=hotline_credentials_from_environment(),
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
    followups: int = 0
    appeal: str | None = None  # the reference of its appeal, once appealed
    withdrawn: bool = False


@dataclass(frozen=True)
class Appeal:
    reference: str
    notice_reference: str
    decided_at: float
    overturned: bool


@dataclass(frozen=True)
class HotlineReport:
    reference: str
    client_reference: str
    url: str
    platform: str
    harm_types: tuple[str, ...]
    urgency: str
    actioned_at: float


def _per_platform() -> dict[str, int]:
    return dict.fromkeys(PLATFORMS, 0)


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
    # After the notice: follow-ups per platform and per notice reference, appeals (by
    # their reference) per platform, withdrawals per platform.
    followups: dict[str, int] = field(default_factory=_per_platform)
    followups_per_reference: dict[str, int] = field(default_factory=dict)
    appeals: dict[str, Appeal] = field(default_factory=dict)
    appealed: dict[str, int] = field(default_factory=_per_platform)
    withdrawals: dict[str, int] = field(default_factory=_per_platform)
    # The national hotline: reports by their reference and by the sender's; every report
    # received counted per client reference, so a report sent twice shows.
    hotline: dict[str, HotlineReport] = field(default_factory=dict)
    hotline_by_client_reference: dict[str, str] = field(default_factory=dict)
    hotline_received: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget every notice, report and count (the behaviour stays as configured)."""
        self.notices.clear()
        self.by_client_reference.clear()
        self.submissions.clear()
        self.per_client_reference.clear()
        self.answers.clear()
        self.malformed.clear()
        self.received = self.lost_replies = 0
        self.followups = _per_platform()
        self.followups_per_reference.clear()
        self.appeals.clear()
        self.appealed = _per_platform()
        self.withdrawals = _per_platform()
        self.hotline.clear()
        self.hotline_by_client_reference.clear()
        self.hotline_received.clear()

    def answered(self, slug: str, status: int) -> None:
        per = self.answers.setdefault(slug, {})
        per[str(status)] = per.get(str(status), 0) + 1

    def reply(
        self, slug: str, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        """An answer from `slug`, counted per platform and status."""
        self.answered(slug, status)
        return JSONResponse(body, status_code=status, headers=headers)

    async def behave(self, spec: PlatformSpec, request: Request) -> JSONResponse | None:
        """The injected latency, then the answer refusing the call, if any: 401 without the
        platform's credentials, else a 429 or a 503 at the configured rates."""
        c = self.config.of(spec.slug)
        if c.latency_ms:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * c.latency_ms / 1000)
        if not authorised(spec, request.headers, self.config.expects):
            return self.reply(spec.slug, {"error": "invalid credentials"}, 401)
        roll = self.rng.random()
        if roll < c.rate_limit_rate:
            retry_after = {"Retry-After": f"{c.retry_after_s:g}"}
            return self.reply(spec.slug, {"error": "rate limited"}, 429, retry_after)
        if roll < c.rate_limit_rate + c.error_rate:
            return self.reply(spec.slug, {"error": "temporarily unavailable"}, 503)
        return None

    def status_of(self, n: Notice) -> str:
        """The notice's status word now: pending, its decision once due (the takedown an
        appeal overturned it to, once the appeal is decided), or withdrawn."""
        spec = PLATFORMS[n.platform]
        if n.withdrawn:
            return "WITHDRAWN"
        now = time.monotonic()
        if now < n.decided_at:
            return spec.pending
        appeal = self.appeals.get(n.appeal) if n.appeal else None
        if appeal is not None and appeal.overturned and now >= appeal.decided_at:
            return spec.takedowns[0]
        return n.decision

    def appeal_view(self, a: Appeal) -> dict[str, Any]:
        n = self.notices[a.notice_reference]
        spec = PLATFORMS[n.platform]
        decided = time.monotonic() >= a.decided_at
        new = spec.takedowns[0] if a.overturned else n.decision
        status = new if decided else spec.pending
        return {
            "reference": a.reference,
            "notice_reference": a.notice_reference,
            "status": status,
            "overturned": a.overturned if decided else None,
        }

    def hotline_view(self, r: HotlineReport) -> dict[str, Any]:
        return {
            "reference": r.reference,
            "client_reference": r.client_reference,
            "status": "actioned" if time.monotonic() >= r.actioned_at else "received",
            "platform": r.platform,
            "url": r.url,
        }

    def platform_activity(self) -> dict[str, dict[str, Any]]:
        """Per platform: notices received, follow-ups (in all and per notice reference),
        appeals, overturns (appeals decided so far that overturned) and withdrawals."""
        now = time.monotonic()
        overturns = _per_platform()
        for a in self.appeals.values():
            if a.overturned and now >= a.decided_at:
                slug = self.notices[a.notice_reference].platform
                overturns[slug] += 1
        return {
            slug: {
                "notices": self.submissions.get(slug, 0),
                "followups": self.followups[slug],
                "followups_per_reference": {
                    ref: count
                    for ref, count in self.followups_per_reference.items()
                    if self.notices[ref].platform == slug
                },
                "appeals": self.appealed[slug],
                "overturns": overturns[slug],
                "withdrawals": self.withdrawals[slug],
            }
            for slug in PLATFORMS
        }

    def hotline_stats(self) -> dict[str, Any]:
        by_platform: dict[str, int] = {}
        for r in self.hotline.values():
            by_platform[r.platform] = by_platform.get(r.platform, 0) + 1
        return {
            "reports": len(self.hotline),
            "received": sum(self.hotline_received.values()),
            "per_client_reference": self.hotline_received,
            "by_platform": by_platform,
        }

    def view(self, n: Notice) -> dict[str, Any]:
        status = self.config.status_override or self.status_of(n)
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


def _overturns(config: SimConfig, client_reference: str) -> bool:
    """Whether an appeal of the notice sent with `client_reference` overturns its decision:
    a draw from the seed and the reference, below the platform's overturn rate."""
    digest = hashlib.sha256(f"{config.seed}|appeal|{client_reference}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < config.appeal_overturn_rate


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


class AfterNotice:
    """The routes that cite a notice after it was sent (follow-up, appeal, withdrawal) and
    the national hotline's, on the simulator's state."""

    def __init__(self, state: SimState) -> None:
        self.s = state

    def routes(self) -> list[Route]:
        return [
            Route("/hotline/v1/reports", self.hotline_reports, methods=["POST"]),
            Route("/hotline/v1/reports/{reference}", self.hotline_report, methods=["GET"]),
            Route("/{platform}/v1/notices/{reference}/followups", self.followup, methods=["POST"]),
            Route("/{platform}/v1/notices/{reference}/appeals", self.appeal, methods=["POST"]),
            Route(
                "/{platform}/v1/notices/{reference}/appeals/{appeal}",
                self.appeal_status,
                methods=["GET"],
            ),
            Route(
                "/{platform}/v1/notices/{reference}/withdrawal",
                self.withdrawal,
                methods=["POST"],
            ),
        ]

    async def known(self, request: Request) -> tuple[PlatformSpec, Notice] | Response:
        """The platform and the notice a follow-up, appeal or withdrawal cites, or the
        answer refusing the request (unknown platform or notice, credentials, injected
        failures)."""
        slug = request.path_params["platform"]
        if slug not in PLATFORMS:
            return JSONResponse({"error": f"unknown platform {slug}"}, status_code=404)
        spec = PLATFORMS[slug]
        if (refused := await self.s.behave(spec, request)) is not None:
            return refused
        n = self.s.notices.get(request.path_params["reference"])
        if n is None or n.platform != slug:
            return self.s.reply(slug, {"error": "not found"}, 404)
        return spec, n

    async def followup(self, request: Request) -> Response:
        found = await self.known(request)
        if isinstance(found, Response):
            return found
        spec, n = found
        body = await _json(request)
        if (error := followup_error(spec, body)) is not None:
            return self.s.reply(spec.slug, {"error": "invalid follow-up", "detail": error}, 400)
        if n.withdrawn:
            return self.s.reply(spec.slug, {"error": "the notice was withdrawn"}, 409)
        n.followups += 1
        self.s.followups[spec.slug] += 1
        self.s.followups_per_reference[n.reference] = n.followups
        body = {
            "reference": n.reference,
            "followups": n.followups,
            "status": self.s.status_of(n),
        }
        return self.s.reply(spec.slug, body, 201)

    async def appeal(self, request: Request) -> Response:
        found = await self.known(request)
        if isinstance(found, Response):
            return found
        spec, n = found
        body = await _json(request)
        if (error := appeal_error(spec, body)) is not None:
            return self.s.reply(spec.slug, {"error": "invalid appeal", "detail": error}, 400)
        if n.appeal is not None:
            return self.s.reply(spec.slug, self.s.appeal_view(self.s.appeals[n.appeal]))
        status = self.s.status_of(n)
        if status in (spec.pending, "WITHDRAWN"):
            return self.s.reply(spec.slug, {"error": "the notice has no decision to appeal"}, 409)
        if status != spec.no_violation:
            return self.s.reply(
                spec.slug, {"error": "only a decision finding no violation can be appealed"}, 409
            )
        c = self.s.config.of(spec.slug)
        self.s.appealed[spec.slug] += 1
        a = Appeal(
            f"{spec.slug}-appeal-{len(self.s.appeals) + 1:08d}",
            n.reference,
            time.monotonic() + c.decision_delay_ms / 1000,
            _overturns(c, n.client_reference),
        )
        self.s.appeals[a.reference] = a
        n.appeal = a.reference
        return self.s.reply(spec.slug, self.s.appeal_view(a), 201)

    async def appeal_status(self, request: Request) -> Response:
        found = await self.known(request)
        if isinstance(found, Response):
            return found
        spec, n = found
        a = self.s.appeals.get(request.path_params["appeal"])
        if a is None or a.notice_reference != n.reference:
            return self.s.reply(spec.slug, {"error": "not found"}, 404)
        return self.s.reply(spec.slug, self.s.appeal_view(a))

    async def withdrawal(self, request: Request) -> Response:
        found = await self.known(request)
        if isinstance(found, Response):
            return found
        spec, n = found
        if not spec.withdrawal:
            return self.s.reply(spec.slug, {"error": f"{spec.slug} offers no withdrawal"}, 405)
        if not n.withdrawn:
            if self.s.status_of(n) != spec.pending:
                return self.s.reply(spec.slug, {"error": "the notice is already decided"}, 409)
            n.withdrawn = True
            self.s.withdrawals[spec.slug] += 1
        return self.s.reply(spec.slug, {"reference": n.reference, "status": "WITHDRAWN"})

    async def hotline_reports(self, request: Request) -> Response:
        if (refused := await self.s.behave(HOTLINE, request)) is not None:
            return refused
        body = await _json(request)
        if (error := hotline_error(body)) is not None:
            return self.s.reply("hotline", {"error": "invalid report", "detail": error}, 400)
        client_reference = str(body["client_reference"])
        self.s.hotline_received[client_reference] = (
            self.s.hotline_received.get(client_reference, 0) + 1
        )
        if (known_ref := self.s.hotline_by_client_reference.get(client_reference)) is not None:
            return self.s.reply("hotline", self.s.hotline_view(self.s.hotline[known_ref]))
        report = HotlineReport(
            f"hotline-{len(self.s.hotline) + 1:08d}",
            client_reference,
            str(body["url"]),
            str(body["platform"]),
            tuple(body["harm_types"]),
            str(body["urgency"]),
            time.monotonic() + self.s.config.decision_delay_ms / 1000,
        )
        self.s.hotline[report.reference] = report
        self.s.hotline_by_client_reference[client_reference] = report.reference
        return self.s.reply("hotline", self.s.hotline_view(report), 201)

    async def hotline_report(self, request: Request) -> Response:
        if (refused := await self.s.behave(HOTLINE, request)) is not None:
            return refused
        report = self.s.hotline.get(request.path_params["reference"])
        if report is None:
            return self.s.reply("hotline", {"error": "not found"}, 404)
        return self.s.reply("hotline", self.s.hotline_view(report))


def create_simulator(config: SimConfig) -> Starlette:
    state = SimState(config, rng=random.Random(config.seed))

    behave = state.behave

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
                "platform_activity": state.platform_activity(),
                "hotline": state.hotline_stats(),
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
            *AfterNotice(state).routes(),
            Route("/_sim/stats", stats, methods=["GET"]),
            Route("/_sim/config", configure, methods=["POST"]),
            Route("/_sim/reset", reset, methods=["POST"]),
            Route("/health/live", health, methods=["GET"]),
            Route("/health/ready", health, methods=["GET"]),
        ]
    )
