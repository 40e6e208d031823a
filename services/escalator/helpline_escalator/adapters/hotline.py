"""The national hotline's reporting channel: where child sexual imagery is reported, never
to the platform's notice channel.

`POST {base}/hotline/v1/reports` with `{client_reference, url, platform, harm_types,
urgency}` answers 201 `{reference, status}` (200 with the same reference when it already
has a report of that client reference: reporting is idempotent, so an unclear answer is
simply reported again); `GET {base}/hotline/v1/reports/{reference}` answers its status
(`received`, then `actioned`). The base URL is `HELPLINE_HOTLINE_BASE_URL`, else
`HELPLINE_PLATFORM_BASE_URL` like the platforms'; the bearer credentials are
`HELPLINE_HOTLINE_CREDENTIALS` (the development credentials only against the simulator;
without credentials elsewhere the escalator refuses to start, as for a platform). The
hotline offers no withdrawal: a report stands. Credentials go only into request headers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from helpline_escalator.adapters.base import (
    ConfigurationError,
    Notice,
    PermanentError,
    PlatformAdapter,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.adapters.notice_api import Reply
from helpline_escalator.platform_settings import is_simulator, url_problem
from helpline_shared.settings import Settings

CREDENTIALS_ENV = "HELPLINE_HOTLINE_CREDENTIALS"
SLUG = "hotline"


@dataclass(frozen=True)
class HotlineSettings:
    base_url: str
    credentials: SecretStr
    timeout_s: float
    dev_credentials: bool = False

    @property
    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + HotlineAdapter.path


def hotline_settings(settings: Settings) -> HotlineSettings:
    """The hotline's endpoint and credentials; `ValueError` (naming what to set) when no
    credentials are configured for an endpoint other than the simulator."""
    base_url = settings.hotline_base_url or settings.platform_base_url
    timeout_s = settings.platform_timeout_s
    if problem := url_problem(base_url):
        raise ValueError(f"hotline: base URL (HELPLINE_HOTLINE_BASE_URL): {problem}")
    given = settings.hotline_credentials
    secret = given.get_secret_value().strip() if given is not None else ""
    if given is not None and (not secret or "\n" in secret or "\r" in secret):
        raise ValueError(f"hotline: {CREDENTIALS_ENV} is empty or holds a line break")
    if secret:
        return HotlineSettings(base_url, SecretStr(secret), timeout_s)
    if not is_simulator(base_url):
        raise ValueError(
            f"hotline: no credentials configured for {base_url} (set {CREDENTIALS_ENV}); "
            "development credentials are used only against the simulator"
        )
    return HotlineSettings(base_url, SecretStr(f"dev-{SLUG}-credentials"), timeout_s, True)


@dataclass(frozen=True)
class Receipt:
    """The hotline took the report: its reference, and the HTTP status of the answer."""

    reference: str
    http_status: int


class HotlineAdapter(PlatformAdapter):
    """Reports to the national hotline. `submit` reports (idempotent by our reference);
    `status` reads the report's status (`actioned` is the hotline's decision: it had the
    content taken down); `lookup` is never needed (reporting again is safe)."""

    slug: ClassVar[str] = SLUG  # type: ignore[misc]
    path: ClassVar[str] = "/hotline/v1/reports"
    status_lookup: ClassVar[bool] = True
    decisions: ClassVar[dict[str, str | None]] = {"received": None, "actioned": "removed"}

    def __init__(self, client: aiohttp.ClientSession, target: str | HotlineSettings) -> None:
        if isinstance(target, str):
            target = HotlineSettings(target, SecretStr(f"dev-{SLUG}-credentials"), 10.0, True)
        self.settings = target
        self._client = client
        self._url = target.endpoint
        self._headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {target.credentials.get_secret_value()}",
        }

    def __repr__(self) -> str:
        return f"HotlineAdapter({self._url!r})"

    async def _call(self, method: str, url: str, body: bytes | None = None) -> Reply:
        """HTTP to the contract's errors as for the platforms: 429 and 5xx and transport
        failures retryable, 401 and 403 a configuration error; other answers returned."""
        try:
            async with self._client.request(method, url, headers=self._headers, data=body) as r:
                response = Reply(
                    r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()
                )
        except TimeoutError as exc:
            raise RetryableError("hotline: timeout", maybe_received=True) from exc
        except aiohttp.ClientError as exc:
            raise RetryableError(
                f"hotline: transport error ({type(exc).__name__})", maybe_received=True
            ) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(
                f"hotline: {'rate limited' if response.status_code == 429 else 'server error'}"
                f" {response.status_code}",
                http_status=response.status_code,
            )
        if response.status_code in (401, 403):
            raise ConfigurationError(
                f"hotline: credentials refused ({response.status_code}); check {CREDENTIALS_ENV}",
                http_status=response.status_code,
            )
        return response

    def _result(self, response: Reply) -> PlatformResult:
        try:
            body = response.json()
            reference, status = str(body["reference"]), str(body["status"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableError(
                f"hotline: unreadable answer ({type(exc).__name__})",
                http_status=response.status_code,
                maybe_received=True,
            ) from exc
        decision = self.decisions.get(status)
        return PlatformResult(reference=reference, decision=decision)  # type: ignore[arg-type]

    async def submit(self, notice: Notice) -> PlatformResult:
        """Report the content (no reporter data: the helpline is the reporter). The
        platform is named so the hotline knows where the content is hosted."""
        raise PermanentError("hotline: use report(notice, platform), which names the platform")

    async def report(self, notice: Notice, platform: str) -> Receipt:
        """Report `notice`'s URL hosted on `platform`; returns the hotline's reference and
        the HTTP status it answered with (201 new, 200 a report it already had)."""
        body = {
            "client_reference": str(notice.client_reference),
            "url": notice.url,
            "platform": platform,
            "harm_types": list(notice.harm_types) or ["child_sexual_imagery"],
            "urgency": notice.urgency,
        }
        response = await self._call("POST", self._url, json.dumps(body).encode())
        if response.status_code not in (200, 201):
            raise PermanentError(
                f"hotline: refused with {response.status_code}: {response.text[:200]}",
                http_status=response.status_code,
            )
        return Receipt(self._result(response).reference, response.status_code)

    async def status(self, reference: str) -> PlatformResult:
        response = await self._call("GET", f"{self._url}/{quote(reference, safe='')}")
        if response.status_code != 200:
            raise PermanentError(
                f"hotline: refused with {response.status_code}: {response.text[:200]}",
                http_status=response.status_code,
            )
        return self._result(response)

    async def lookup(self, client_reference: uuid.UUID) -> PlatformResult | None:
        return None  # reporting again is safe: the hotline answers the same report

    async def withdraw(self, reference: str) -> bool:
        return False  # a report to the hotline stands
