"""Signed sign-in sessions and CSRF tokens for the HTML pages (itsdangerous).

A session cookie holds only a key id, signed and timestamped: it is valid for
`settings.session_max_age_s` and cannot be forged without the secret. The caller still
checks that the key is live (`Access.key`), so revoking a key ends its sessions. The secret
is `settings.session_secret`; unset, a random one per process, so sessions end when the
process restarts and several replicas need the setting.

CSRF uses the signed double-submit pattern: a random value in the `helpline_csrf` cookie and,
in the form, a token that is that value signed. A forged cross-site form can neither read the
cookie nor make a token for it; `csrf_ok` compares in constant time.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from helpline_shared.settings import Settings

SESSION_COOKIE = "helpline_session"
CSRF_COOKIE = "helpline_csrf"


@functools.cache
def _process_secret() -> str:
    """One random secret for this process, made on first use (not at import)."""
    return secrets.token_urlsafe(32)


class Sessions:
    """Issues and reads session cookies and CSRF pairs under one secret."""

    def __init__(self, settings: Settings) -> None:
        secret = (
            settings.session_secret.get_secret_value()
            if settings.session_secret is not None
            else _process_secret()
        )
        self._settings = settings
        self._sessions = URLSafeTimedSerializer(secret, salt="helpline.session")
        self._csrf = TimestampSigner(secret, salt="helpline.csrf")

    def issue(self, key_id: str) -> str:
        """A cookie value naming `key_id`, valid for `session_max_age_s`."""
        return self._sessions.dumps(key_id)

    def read(self, cookie: str | None) -> str | None:
        """The key id of a valid cookie; None when absent, expired or tampered with."""
        if not cookie:
            return None
        try:
            key_id = self._sessions.loads(cookie, max_age=self._settings.session_max_age_s)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        return key_id if isinstance(key_id, str) else None

    def cookie_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `Response.set_cookie` of either cookie."""
        return {
            "max_age": self._settings.session_max_age_s,
            "httponly": True,
            "samesite": "lax",
            "secure": self._settings.cookie_secure,
            "path": "/",
        }

    def csrf_pair(self) -> tuple[str, str]:
        """(cookie value, form token): a fresh random value and that value signed."""
        value = secrets.token_urlsafe(32)
        return value, self._csrf.sign(value).decode("ascii")

    def csrf_ok(self, cookie_value: str | None, token: str | None) -> bool:
        """Whether `token` is `cookie_value` signed by us, within `session_max_age_s`."""
        if not cookie_value or not token:
            return False
        try:
            signed = self._csrf.unsign(token, max_age=self._settings.session_max_age_s)
        except BadSignature:
            return False
        return hmac.compare_digest(signed, cookie_value.encode("utf-8", "replace"))
