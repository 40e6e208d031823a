"""The HTTP mechanics shared by platforms that take notices as JSON over HTTPS.

A platform module supplies its path, its request shape (`payload`), how it takes
credentials (`auth`), its fallback reason codes and its status vocabulary; this class turns
HTTP into the contract's results and typed errors: 429 and 5xx and transport failures are
retryable (honouring `Retry-After`), 401 and 403 are a configuration error (credentials
refused), other 4xx are permanent. Credentials go only into request headers: never into
a reason, a log line or a repr.

The client is aiohttp rather than httpx: measured with `helpline bench`, httpx's
connection pool spent about 80% of the escalator's CPU choosing a connection for each
request (`is_socket_readable` on every pooled connection), which capped escalation far
below the rest of the pipeline.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from helpline_escalator.adapters.base import (
    ConfigurationError,
    NeedsManualError,
    Notice,
    PermanentError,
    PlatformAdapter,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.platform_settings import PlatformConfig, PlatformSettings, resolve
from helpline_shared.events import Decision
from helpline_shared.settings import Settings

_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _retry_after(response: Reply) -> float | None:
    """The `Retry-After` header in seconds: a number of seconds or an HTTP date (RFC 9110);
    None when absent or unreadable (not a finite, non-negative number or a date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class NoticeApiAdapter(PlatformAdapter):
    """A platform's partner notice endpoint: `POST {path}`, `GET {path}/{reference}`,
    `GET {path}?{lookup_param}=<our reference>`; after the notice, `POST
    {path}/{reference}/followups`, `POST {path}/{reference}/appeals`, `GET
    {path}/{reference}/appeals/{appeal}` and `POST {path}/{reference}/withdrawal`, each
    body in the platform's own shape (`followup_payload`, `appeal_payload`)."""

    appeals = True
    withdrawal = True

    path: ClassVar[str]
    categories: ClassVar[dict[str, str]]  # reason codes by harm type, when triage gave none
    default_category: ClassVar[str] = "other"
    decisions: ClassVar[dict[str, Decision | None]]
    lookup_param: ClassVar[str] = "client_reference"
    api_key_header: ClassVar[str] = "X-Api-Key"  # for `auth = "api_key"`
    # The body of the platform's own "no such notice" answer; a 404 with any other body
    # (a proxy's, a missing route's) is not an answer about the notice.
    not_found: ClassVar[dict[str, str]] = {"error": "not found"}

    def __init__(self, client: aiohttp.ClientSession, target: str | PlatformSettings) -> None:
        """`target` is the platform's resolved settings or, in tests, just a base URL
        (every other setting at its default, the development credentials)."""
        if isinstance(target, str):
            target = resolve(
                self.slug,
                PlatformConfig(),
                Settings.model_construct(platform_base_url=target),
                self.defaults(),
                dev_anywhere=True,
            )
        self.settings = target
        self.settle_s = target.settle_s
        self._client = client
        self._url = target.endpoint
        self._headers = {**_JSON, **self._auth_headers(target)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    def _auth_headers(self, s: PlatformSettings) -> dict[str, str]:
        """The platform's own way of taking credentials."""
        secret = s.credentials.get_secret_value() if s.credentials else ""
        if self.auth == "bearer":
            return {"Authorization": f"Bearer {secret}"}
        if self.auth == "oauth":
            return {"Authorization": f"OAuth {secret}"}
        if self.auth == "bot":
            return {"Authorization": f"Bot {secret}"}
        if self.auth == "api_key":
            return {self.api_key_header: secret}
        if self.auth == "client_id_bearer":
            return {"Client-Id": s.client_id or "", "Authorization": f"Bearer {secret}"}
        if self.auth == "basic":
            password = s.client_secret.get_secret_value() if s.client_secret else ""
            pair = base64.b64encode(f"{s.client_id}:{password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        raise ValueError(f"{self.slug}: unknown auth style {self.auth!r}")

    def reason_code(self, notice: Notice) -> str:
        """The platform's own reason code: triage's (from the rules data), else the
        adapter's for the lead harm."""
        if notice.reason_code:
            return notice.reason_code
        return self.category(notice.harm_types)

    def category(self, harm_types: tuple[str, ...]) -> str:
        """The platform's own code for the lead harm, when triage's rules gave none; for no
        harm type, or one the adapter does not know, the platform's own code for "other"."""
        fallback = self.categories.get("other", self.default_category)
        return self.categories.get(harm_types[0], fallback) if harm_types else fallback

    def payload(self, notice: Notice) -> dict[str, Any]:
        """The request body in the platform's own shape (this default: a plain one)."""
        return {
            "client_reference": str(notice.client_reference),
            "url": notice.url,
            "category": self.reason_code(notice),
            "dsa_category": notice.dsa_category,
            "explanation": notice.explanation,
            "priority": "urgent" if notice.urgency == "critical" else "standard",
            "notifier": {"name": notice.notifier_name, "email": notice.notifier_email},
            "good_faith_statement": notice.good_faith_statement,
        }

    def followup_payload(self, count: int, message: str) -> dict[str, Any]:
        """A follow-up's body in the platform's own shape (this default: a plain one)."""
        return {"follow_up": count, "message": message}

    def appeal_payload(self, note: str) -> dict[str, Any]:
        """An appeal's body in the platform's own shape (this default: a plain one)."""
        return {"reason": note}

    def _result(self, response: Reply) -> PlatformResult:
        try:
            body = response.json()
            status = str(body["status"])
            reference = str(body["reference"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableError(
                f"{self.slug}: unreadable answer ({type(exc).__name__})",
                http_status=response.status_code,
                maybe_received=True,
            ) from exc
        if status not in self.decisions:
            # The platform answered (and may have accepted the notice): keep its reference
            # and let a person read the answer.
            raise NeedsManualError(
                f"{self.slug}: unknown status {status[:80]!r}",
                http_status=response.status_code,
                reference=reference,
            )
        return PlatformResult(
            reference=reference,
            decision=self.decisions[status],
            http_status=response.status_code,
        )

    def _is_not_found(self, response: Reply) -> bool:
        try:
            return bool(response.json() == self.not_found)
        except ValueError:
            return False

    async def _call(self, method: str, url: str, **kwargs: Any) -> Reply:
        try:
            async with self._client.request(method, url, headers=self._headers, **kwargs) as r:
                response = Reply(
                    r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()
                )
        except TimeoutError as exc:
            raise RetryableError(f"{self.slug}: timeout", maybe_received=True) from exc
        except aiohttp.ClientConnectorError as exc:
            raise RetryableError(f"{self.slug}: cannot connect ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError(
                f"{self.slug}: transport error ({type(exc).__name__})", maybe_received=True
            ) from exc
        if response.status_code == 429:
            raise RetryableError(
                f"{self.slug}: rate limited",
                http_status=429,
                retry_after_s=_retry_after(response),
            )
        if response.status_code in (401, 403):
            raise ConfigurationError(
                f"{self.slug}: credentials refused ({response.status_code}); "
                f"check HELPLINE_PLATFORMS__{self.slug.upper()}__CREDENTIALS",
                http_status=response.status_code,
            )
        if response.status_code >= 500:
            raise RetryableError(
                f"{self.slug}: server error {response.status_code}",
                http_status=response.status_code,
                retry_after_s=_retry_after(response),
                # 503 says the request was not processed; other 5xx leave it unknown.
                maybe_received=response.status_code != 503,
            )
        return response

    @staticmethod
    def _refuse(slug: str, response: Reply) -> PermanentError:
        return PermanentError(
            f"{slug}: refused with {response.status_code}: {response.text[:200]}",
            http_status=response.status_code,
        )

    async def submit(self, notice: Notice) -> PlatformResult:
        response = await self._call(
            "POST", self._url, data=json.dumps(self.payload(notice)).encode()
        )
        if response.status_code not in (200, 201, 202):
            raise self._refuse(self.slug, response)
        return self._result(response)

    async def status(self, reference: str) -> PlatformResult:
        if not self.settings.status_lookup:
            raise NeedsManualError(
                f"{self.slug}: no status lookup; its decision arrives by its own channel "
                "(email): record it by hand",
                reference=reference,
            )
        # The platform's reference is one path segment, exactly as it gave it: a '/', '?'
        # or '..' in it must not reach another path or query on the platform.
        response = await self._call("GET", f"{self._url}/{quote(reference, safe='')}")
        if response.status_code != 200:
            raise self._refuse(self.slug, response)
        return self._result(response)

    async def lookup(self, client_reference: uuid.UUID) -> PlatformResult | None:
        if not self.settings.status_lookup:
            raise NeedsManualError(
                f"{self.slug}: no status lookup, so whether an unanswered notice arrived "
                "cannot be checked: look in the platform's partner portal or email"
            )
        response = await self._call(
            "GET", self._url, params={self.lookup_param: str(client_reference)}
        )
        if response.status_code == 404:
            if self._is_not_found(response):
                return None
            raise RetryableError(
                f"{self.slug}: 404 without the platform's not-found answer (a missing route?)",
                http_status=404,
                maybe_received=True,
            )
        if response.status_code != 200:
            raise self._refuse(self.slug, response)
        return self._result(response)

    def _of(self, reference: str, *route: str) -> str:
        # The platform's references are path segments exactly as it gave them: a '/', '?'
        # or '..' in one must not reach another path or query on the platform.
        return "/".join([self._url, *(quote(part, safe="") for part in (reference, *route))])

    def _refused_after(self, what: str, response: Reply) -> PermanentError:
        """A 4xx refusal of a call about a notice, saying which call and why: the platform
        knows no such notice (404) or the notice's state forbids it (409)."""
        if response.status_code == 404 and self._is_not_found(response):
            why = "the platform knows no such notice"
        elif response.status_code == 409:
            why = "the notice's state forbids it"
        else:
            return self._refuse(self.slug, response)
        return PermanentError(
            f"{self.slug}: {what} refused ({response.status_code}): {why}: {response.text[:200]}",
            http_status=response.status_code,
        )

    async def follow_up(self, reference: str, count: int) -> PlatformResult:
        message = (
            f"Follow-up {count}: our notice (your reference {reference}) is past its decision "
            "deadline. The content is still reported as harmful to children or school staff; "
            "we ask again for your decision."
        )
        response = await self._call(
            "POST",
            self._of(reference, "followups"),
            data=json.dumps(self.followup_payload(count, message)).encode(),
        )
        if response.status_code not in (200, 201, 202):
            raise self._refused_after("follow-up", response)
        return self._result(response)

    async def appeal(self, reference: str, note: str) -> PlatformResult:
        if not self.settings.appeals:
            raise NeedsManualError(
                f"{self.slug}: no appeal route configured; appeal in the platform's partner "
                "portal and record its answer by hand",
                reference=reference,
            )
        response = await self._call(
            "POST",
            self._of(reference, "appeals"),
            data=json.dumps(self.appeal_payload(note)).encode(),
        )
        if response.status_code not in (200, 201, 202):
            raise self._refused_after("appeal", response)
        return self._result(response)

    async def appeal_status(self, reference: str, appeal_reference: str) -> PlatformResult:
        response = await self._call("GET", self._of(reference, "appeals", appeal_reference))
        if response.status_code != 200:
            raise self._refused_after("appeal status", response)
        return self._result(response)

    async def withdraw(self, reference: str) -> bool:
        return (await self.withdraw_answered(reference))[0]

    async def withdraw_answered(self, reference: str) -> tuple[bool, int | None]:
        if not self.settings.withdrawal:
            return False, None
        response = await self._call("POST", self._of(reference, "withdrawal"))
        if response.status_code == 405:  # the platform says it offers none
            return False, 405
        if response.status_code not in (200, 202, 204):
            raise self._refused_after("withdrawal", response)
        return True, response.status_code
