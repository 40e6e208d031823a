"""Each simulated platform's behaviour and expected credentials at start-up.

`HELPLINE_SIMULATOR__<SLUG>__<FIELD>` sets one platform's behaviour (for example
`HELPLINE_SIMULATOR__TIKTOK__LATENCY_MS=2000`, `__RATE_LIMIT_RATE=0.5`, `__RETRY_AFTER_S`,
`__ERROR_RATE`, `__DECISION_DELAY_MS`, `__TAKEDOWN_RATE`, `__APPEAL_OVERTURN_RATE`) or the
credentials it expects (`__CREDENTIALS`, `__CLIENT_ID`, `__CLIENT_SECRET`). The credentials
it expects are, in order: its own setting; the escalator's for the same platform
(`HELPLINE_PLATFORMS__<SLUG>__CREDENTIALS`, or `__API_KEY` / `__TOKEN`, `__CLIENT_ID`,
`__CLIENT_SECRET`, then the platforms file `HELPLINE_PLATFORMS_FILE`), so one environment
configures both sides alike; else the development credentials the escalator also uses
against a simulator. The national hotline's bearer token likewise:
`HELPLINE_SIMULATOR__HOTLINE__CREDENTIALS`, else the escalator's
`HELPLINE_HOTLINE_CREDENTIALS`, else `dev-hotline-credentials`.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from helpline_simulator.platforms import PLATFORMS

CREDENTIAL_FIELDS = ("credentials", "client_id", "client_secret")
HOTLINE = "hotline"
_ALIASES = {"api_key": "credentials", "token": "credentials"}


class PlatformBehaviour(BaseModel):
    """One platform's departures from the simulator's global behaviour."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    error_rate: float | None = Field(None, ge=0, le=1)
    rate_limit_rate: float | None = Field(None, ge=0, le=1)
    retry_after_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    decision_delay_ms: float | None = Field(None, ge=0, allow_inf_nan=False)
    takedown_rate: float | None = Field(None, ge=0, le=1)
    appeal_overturn_rate: float | None = Field(None, ge=0, le=1)
    credentials: str | None = Field(None, min_length=1)
    client_id: str | None = Field(None, min_length=1)
    client_secret: str | None = Field(None, min_length=1)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class GlobalBehaviour(PlatformBehaviour):
    """A run-time change to every platform's behaviour (`/_sim/config` without `platforms`):
    the same checks as one platform's, with the knobs only the whole simulator has."""

    credentials: None = None
    client_id: None = None
    client_secret: None = None
    seed: int | None = None
    status_override: str | None = None
    lost_reply_rate: float | None = Field(None, ge=0, le=1)
    store_delay_ms: float | None = Field(None, ge=0, allow_inf_nan=False)


def validate_global(changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` to the global behaviour, checked; raises `ValueError` naming the field."""
    try:
        return GlobalBehaviour.model_validate(changes).changes()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"simulator field {field}: {first['msg']}") from None


class _Environment(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HELPLINE_", env_nested_delimiter="__", extra="ignore"
    )

    simulator: dict[str, dict[str, Any]] = {}
    platforms: dict[str, dict[str, Any]] = {}


def validate_behaviour(slug: str, changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` for `slug`, checked; raises `ValueError` naming the platform and field."""
    if slug not in PLATFORMS:
        raise ValueError(f"simulator: {slug!r} is not a simulated platform")
    try:
        return PlatformBehaviour.model_validate(changes).changes()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"simulator platform {slug}, field {field}: {first['msg']}") from None


def _escalator_credentials(platforms: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, values in platforms.items():
        slug = str(name).lower()  # as the escalator reads names: whatever their case
        if slug in PLATFORMS and isinstance(values, dict):
            creds = {_ALIASES.get(str(k).lower(), str(k).lower()): v for k, v in values.items()}
            # As the escalator reads them: surrounding whitespace dropped.
            found[slug] = {k: str(v).strip() for k, v in creds.items() if k in CREDENTIAL_FIELDS}
    return found


def _platforms_file() -> dict[str, Any]:
    name = os.environ.get("HELPLINE_PLATFORMS_FILE")
    if not name:
        return {}
    path = Path(name)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        data: Any = tomllib.loads(text)
    elif path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml  # type: ignore[import-untyped]

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        return {}
    platforms = data.get("platforms", data.get("PLATFORMS", data))
    return platforms if isinstance(platforms, dict) else {}


def platforms_from_environment() -> dict[str, dict[str, Any]]:
    """Each platform's behaviour and expected credentials from the environment."""
    env = _Environment()
    merged = _escalator_credentials(_platforms_file())
    for slug, creds in _escalator_credentials(env.platforms).items():
        merged.setdefault(slug, {}).update(creds)
    for slug, values in env.simulator.items():
        if slug.lower() != HOTLINE:
            merged.setdefault(slug, {}).update(values)
    return {slug: validate_behaviour(slug, values) for slug, values in merged.items()}


def hotline_credentials_from_environment() -> str:
    """The bearer token the simulated hotline expects, as the escalator sends it; '' for
    the development one."""
    own = {str(k).lower(): v for k, v in _Environment().simulator.items()}.get(HOTLINE, {})
    given = {str(k).lower(): v for k, v in own.items()}.get("credentials")
    return str(given or os.environ.get("HELPLINE_HOTLINE_CREDENTIALS", "")).strip()
