"""The web layer every HTTP API shares: API keys, problem details, rate limits, OpenAPI.

Every keyed endpoint declares `Depends(access.require(scope))`. A request then gets, in
this order: the per-client-address rate limit (so guessing keys is limited too), the key
check (401 `missing` or `invalid or revoked`, with `WWW-Authenticate: Bearer`), the per-key
rate limit, and the scope check (403 naming the scope and the key id, never the secret).
Every refusal is RFC 9457 problem details (`application/problem+json`), declared in the
OpenAPI document through `AUTH_RESPONSES`. HEAD is answered as GET without the content, so
it needs the same key and never carries data.

Every request's key is checked against `access.api_keys` (one indexed read), so a
revocation takes effect on the next request in every process: no process trusts a key it
has not just read as live. A key's `last_used_at` is written at most once a minute (see
`apikeys.verify`).
Rate limits are counted per process, in memory, over a moving window: with several
replicas each enforces its own limit, so a client may make up to replicas x limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpline_shared import apikeys
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from helpline_shared.websession import SESSION_COOKIE, Sessions

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://helpline.example/problems/"
# How long a verified key is trusted without asking the database: never, so that revoking
# a key takes effect at once (kept as a name for callers that wait on it).
KEY_CACHE_S = 0.0


class Problem(BaseModel):
    """RFC 9457 problem details; any further members (e.g. `errors`, `needed_scope`) may
    follow the four every problem carries."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    type: str = Field(
        description="URI naming the kind of problem.",
        examples=[f"{PROBLEM_BASE}unauthorized"],
    )
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.", examples=[401])
    detail: str = Field(description="What went wrong with this request.")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response of `status`, typed `https://helpline.example/problems/{slug}`."""
    body = Problem(type=f"{PROBLEM_BASE}{slug}", title=title, status=status, detail=detail, **extra)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


class ProblemError(Exception):
    """Raised inside a dependency or handler to answer with a problem response."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def _problem_schema() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Problem"}


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI `responses=` entry: a problem+json body of the Problem schema."""
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _problem_schema()}},
    }


def _retry_after() -> dict[str, Any]:
    return {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        **problem_response("No API key, or one that is malformed, unknown or revoked."),
        "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    },
    403: problem_response("The key lacks the scope this endpoint needs (named in the body)."),
    429: {
        **problem_response("Too many requests from this key or this client address."),
        "headers": _retry_after(),
    },
}

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
}
_TITLES = {
    404: "Not found",
    405: "Method not allowed",
}


def new_api(title: str, description: str, *, version: str = "1") -> FastAPI:
    """A FastAPI app serving `/openapi.json` (no docs pages) whose HTTP errors, 404 and
    405 included, are problem+json, and whose document declares the `bearerAuth` scheme and
    the Problem schema. FastAPI's request-validation 422 keeps its documented shape."""
    api = FastAPI(
        title=title,
        description=description,
        version=version,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if status == 404:
            detail = f"nothing here at {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        if status == 405:
            detail = f"{request.method} is not served here"
            allowed = [m.strip() for m in (headers or {}).get("Allow", "").split(",") if m.strip()]
            if "GET" in allowed and "HEAD" not in allowed:  # HeadAsGet serves HEAD
                headers = {**(headers or {}), "Allow": ", ".join([*allowed, "HEAD"])}
        return problem(
            status,
            _TITLES.get(status, detail),
            detail,
            slug=_SLUGS.get(status, f"http-{status}"),
            headers=headers,
        )

    async def problem_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return exc.response

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception after this answer; its message may quote the
        # request, so the answer does not repeat it.
        return problem(
            500, "Internal error", "the server failed to answer; try again later", slug="internal"
        )

    api.add_middleware(HeadAsGet)
    api.add_exception_handler(Exception, internal_error)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(ProblemError, problem_error)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title,
                version=api.version,
                openapi_version=api.openapi_version,
                description=api.description,
                routes=api.routes,
            )
            components = document.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearerAuth"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key `hk_...` (see `helpline keys create`).",
            }
            schemas = components.setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema()
            schemas.update(_extra_schemas(api))
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api


class HeadAsGet:
    """ASGI middleware answering HEAD as GET without the content (RFC 9110 9.3.2), so a
    keyed GET endpoint asks for its key on HEAD too (401/403 as for GET) and a HEAD never
    carries a body, whatever the endpoint would have sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_content(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_content)


def _extra_schemas(api: FastAPI) -> dict[str, Any]:
    extra: dict[str, Any] = getattr(api.state, "helpline_schemas", {})
    return extra


def add_schemas(api: FastAPI, schemas: dict[str, Any]) -> None:
    """Put `schemas` (name -> JSON schema) into the document's `components/schemas`, for
    bodies declared by hand through `openapi_extra` (refs `#/components/schemas/{name}`)."""
    if not hasattr(api.state, "helpline_schemas"):
        api.state.helpline_schemas = {}
    api.state.helpline_schemas.update(schemas)
    api.openapi_schema = None


def client_address(request: Request) -> str:
    """The address of the socket peer. X-Forwarded-For is never trusted by default, since
    any client can send it: behind a reverse proxy every client would share the proxy's
    address. `HELPLINE_TRUSTED_PROXIES` (the proxies' addresses or networks) makes
    `helpline run` trust the header from those peers only; uvicorn then rewrites the peer
    address to the client's before this reads it."""
    return request.client.host if request.client is not None else "unknown"


class RateLimiter:
    """Moving-window counters kept in this process's memory (the `limits` library)."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._parsed: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        item = self._parsed.get(limit)
        if item is None:
            item = self._parsed[limit] = parse(limit)
        return item

    def check(self, limit: str) -> None:
        """Raises ValueError if `limit` is not in the `limits` notation ("20/hour")."""
        self._item(limit)

    def hit(self, bucket: str, limit: str) -> float | None:
        """Count one request against `bucket` under `limit` ("20/hour"); None if allowed,
        else the seconds until the window lets another request in (it is not counted)."""
        item = self._item(limit)
        if self._limiter.hit(item, bucket):
            return None
        reset_at, _ = self._limiter.get_window_stats(item, bucket)
        return max(reset_at - time.time(), 0.0)


def too_many(wait_s: float, detail: str) -> JSONResponse:
    """429 problem with `Retry-After` (whole seconds, at least 1)."""
    return problem(
        429,
        "Too many requests",
        detail,
        slug="too-many-requests",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="An API key `hk_...` (see `helpline keys create`).",
)
_KEY_COLUMNS = "key_id, name, scopes, source, created_at, created_by, revoked_at, last_used_at"


class Access:
    """Checks API keys and rate limits for the endpoints of one service (see module doc)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        """Raises ValueError naming the setting when a rate limit cannot be read, so a
        service with a mistyped limit stops at start instead of failing every request."""
        self._db = db
        self._settings = settings
        self.limiter = RateLimiter()
        for name in ("rate_limit_per_key", "rate_limit_per_client"):
            value = getattr(settings, name)
            try:
                self.limiter.check(value)
            except ValueError:
                raise ValueError(
                    f"HELPLINE_{name.upper()}={value!r} is not a rate limit; write it as "
                    "'600/minute' or '10 per second'"
                ) from None

    async def verify(self, token: str) -> KeyInfo | None:
        """The live key `token` is, or None (malformed, unknown, wrong or revoked), read
        from the database on every call so a revoked key is refused at once."""
        if not token.startswith(apikeys.PREFIX):
            return None
        async with self._db.pool.acquire() as conn:
            return await apikeys.verify(conn, token)

    async def key(self, key_id: str) -> KeyInfo | None:
        """The live (not revoked) key with this id, or None: for sign-in sessions, which
        hold a key id. Read on every call, like `verify`."""
        row = await self._db.pool.fetchrow(
            f"SELECT {_KEY_COLUMNS} FROM access.api_keys WHERE key_id = $1 AND revoked_at IS NULL",
            key_id,
        )
        if row is None:
            return None
        return KeyInfo(
            key_id=row["key_id"],
            name=row["name"],
            scopes=frozenset(row["scopes"]),
            source=row["source"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
        )

    def limit_client(self, request: Request) -> None:
        """Count a request against its client address; raises a 429 ProblemError past it."""
        wait = self.limiter.hit(
            f"client:{client_address(request)}", self._settings.rate_limit_per_client
        )
        if wait is not None:
            raise ProblemError(too_many(wait, "too many requests from this client address"))

    def limit_key(self, info: KeyInfo) -> None:
        """Count a request against its key; raises a 429 ProblemError past the limit."""
        wait = self.limiter.hit(f"key:{info.key_id}", self._settings.rate_limit_per_key)
        if wait is not None:
            raise ProblemError(too_many(wait, f"too many requests with key {info.key_id}"))

    async def authenticate(self, request: Request, sessions: Sessions | None = None) -> KeyInfo:
        """The live key of the request's `Authorization: Bearer` header or, without one and
        with `sessions`, of its sign-in session cookie; raises a 401 ProblemError (missing /
        invalid or revoked) otherwise."""
        header = request.headers.get("authorization")
        if not header and sessions is not None:
            key_id = sessions.read(request.cookies.get(SESSION_COOKIE))
            session_key = await self.key(key_id) if key_id is not None else None
            if session_key is not None:
                return session_key
        if not header:
            raise ProblemError(unauthorized("missing", "send Authorization: Bearer <API key>"))
        scheme, _, token = header.partition(" ")
        info = None
        if scheme.lower() == "bearer" and token.strip():
            info = await self.verify(token.strip())
        if info is None:
            raise ProblemError(
                unauthorized(
                    "invalid or revoked",
                    "the API key is malformed, unknown or revoked (send Authorization: "
                    "Bearer hk_...)",
                )
            )
        return info

    def require(
        self, scope: str, *, sessions: Sessions | None = None
    ) -> Callable[..., Awaitable[KeyInfo]]:
        """A FastAPI dependency answering the caller's key if it grants `scope`, after the
        rate limits; a 401, 403 or 429 problem otherwise (see module doc). With `sessions`,
        a request without an Authorization header may instead carry a sign-in session of a
        live key (for pages a browser opens)."""
        if scope not in apikeys.SCOPES:
            raise ValueError(f"unknown scope {scope!r}; choose from {', '.join(apikeys.SCOPES)}")

        async def caller(
            request: Request,
            _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> KeyInfo:
            self.limit_client(request)
            info = await self.authenticate(request, sessions)
            self.limit_key(info)
            if not info.allows(scope):
                raise ProblemError(
                    problem(
                        403,
                        "Key lacks the needed scope",
                        f"this endpoint needs the {scope!r} scope; key {info.key_id} has "
                        f"{', '.join(sorted(info.scopes))}",
                        slug="forbidden",
                        needed_scope=scope,
                        key_id=info.key_id,
                    )
                )
            return info

        return caller


def unauthorized(kind: str, detail: str) -> JSONResponse:
    """401 problem; `kind` is "missing" or "invalid or revoked" (also in the title)."""
    return problem(
        401,
        f"API key {kind}",
        detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
        reason=kind,
    )
