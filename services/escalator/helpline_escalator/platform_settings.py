"""Each platform's own settings: endpoint, credentials, limits, capabilities, breaker.

Read at start-up from `HELPLINE_PLATFORMS__<SLUG>__<FIELD>` environment variables (for
example `HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S=5`, `HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS`
or its alias `__API_KEY`) and from an optional file named by `HELPLINE_PLATFORMS_FILE`
(TOML, JSON or YAML; one table per platform). The environment overrides the file; a value
set in neither falls back to the global settings (`HELPLINE_PLATFORM_BASE_URL`,
`_RATE_PER_S`, `_CONCURRENCY`, `_TIMEOUT_S`, `_SETTLE_S`) and then to the adapter's own
defaults, so a deployment that sets only the global values keeps working. An invalid value
is refused at start-up by a `ValueError` naming the platform and the field.

Credentials are `SecretStr`: never in a repr, a log line or an error. A platform with no
credentials configured uses its built-in development credentials (the simulator's) only
when its endpoint is the simulator: a loopback host, or the dev stacks' `simulator` /
`helpline-simulator` service. Anywhere else it is a start-up error, so a production
deployment never silently sends development credentials to a real platform.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from helpline_escalator.platforms_file import FILE_ENV, FileSource, read_platforms_file
from helpline_shared.settings import Settings

PLATFORM_SLUGS = (
    "tiktok",
    "instagram",
    "facebook",
    "threads",
    "whatsapp",
    "youtube",
    "x",
    "snapchat",
    "discord",
    "reddit",
    "twitch",
    "roblox",
    "telegram",
)
DEV_HOSTS = frozenset({"localhost", "simulator", "helpline-simulator"})


class PlatformConfig(BaseModel):
    """What may be set for one platform; anything left unset takes its default."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    base_url: str | None = Field(None, min_length=1, description="Default: the global one.")
    path: str | None = Field(None, pattern=r"^/", description="Default: the adapter's path.")
    credentials: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("credentials", "api_key", "token"),
        description="The API key or bearer token, as the platform uses it.",
    )
    client_id: str | None = Field(None, min_length=1)
    client_secret: SecretStr | None = None
    rate_per_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    concurrency: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    settle_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    status_lookup: bool | None = None
    appeals: bool | None = None
    withdrawal: bool | None = None
    breaker_failures: int = Field(5, ge=1, description="Failures in a row that open the circuit.")
    breaker_open_s: float = Field(
        30.0, gt=0, allow_inf_nan=False, description="Open before a probe."
    )

    @field_validator("credentials", "client_secret", "client_id")
    @classmethod
    def _a_usable_credential(cls, value: SecretStr | str | None) -> SecretStr | str | None:
        """A credential without surrounding whitespace (a secret file's trailing newline is
        dropped); an empty one, or one with a control character inside (it could not go
        into a header), is refused at start-up. The message never quotes it."""
        if value is None:
            return None
        secret = value.get_secret_value() if isinstance(value, SecretStr) else value
        secret = secret.strip()
        if not secret:
            raise ValueError("empty")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in secret):
            raise ValueError("contains a control character (a line break?)")
        return SecretStr(secret) if isinstance(value, SecretStr) else secret

    @field_validator("base_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        """An endpoint is an http(s) URL with a host and no credentials in it; anything
        else is refused at start-up rather than failing every call later."""
        if value is not None and (problem := url_problem(value)):
            raise ValueError(problem)
        return value


def url_problem(value: str) -> str | None:
    """Why `value` cannot be a platform's endpoint, never quoting it; None when it can."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "not a URL (expected http(s)://host[:port])"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not a URL (expected http(s)://host[:port])"
    if parts.username is not None or parts.password is not None:
        return "holds credentials: set them in CREDENTIALS (or the platforms file), not the URL"
    return None


class PlatformsConfig(BaseSettings):
    """Every platform's `PlatformConfig`, one field per platform slug."""

    model_config = SettingsConfigDict(
        env_prefix="HELPLINE_PLATFORMS__", env_nested_delimiter="__", extra="forbid"
    )

    tiktok: PlatformConfig = PlatformConfig()
    instagram: PlatformConfig = PlatformConfig()
    facebook: PlatformConfig = PlatformConfig()
    threads: PlatformConfig = PlatformConfig()
    whatsapp: PlatformConfig = PlatformConfig()
    youtube: PlatformConfig = PlatformConfig()
    x: PlatformConfig = PlatformConfig()
    snapchat: PlatformConfig = PlatformConfig()
    discord: PlatformConfig = PlatformConfig()
    reddit: PlatformConfig = PlatformConfig()
    twitch: PlatformConfig = PlatformConfig()
    roblox: PlatformConfig = PlatformConfig()
    telegram: PlatformConfig = PlatformConfig()

    file_data: ClassVar[dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values, then the environment, then the platforms file."""
        return init_settings, env_settings, FileSource(settings_cls, cls.file_data)


@dataclass(frozen=True)
class PlatformSettings:
    """One platform's settings, resolved: every value concrete. `dev_credentials` says the
    built-in development credentials are in use (only ever against the simulator)."""

    slug: str
    base_url: str
    path: str
    credentials: SecretStr | None
    client_id: str | None
    client_secret: SecretStr | None
    rate_per_s: float
    concurrency: int
    timeout_s: float
    settle_s: float
    status_lookup: bool
    appeals: bool
    withdrawal: bool
    breaker_failures: int = 5
    breaker_open_s: float = 30.0
    dev_credentials: bool = False

    @property
    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + self.path


class PlatformSettingsMap(dict[str, PlatformSettings]):
    """Resolved settings by slug; also `platform_settings.tiktok` for `["tiktok"]`."""

    def __getattr__(self, slug: str) -> PlatformSettings:
        try:
            return self[slug]
        except KeyError:
            raise AttributeError(slug) from None


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        where = ".".join(loc)
        env = "HELPLINE_PLATFORMS__" + "__".join(part.upper() for part in loc)
        if loc and loc[0] not in PLATFORM_SLUGS:
            lines.append(f"{where}: not a platform (known: {', '.join(PLATFORM_SLUGS)})")
        else:
            lines.append(f"platform {loc[0]}, field {'.'.join(loc[1:])}: {error['msg']} ({env})")
    return "invalid platform settings: " + "; ".join(lines)


def load_platforms_config(file: Path | None = None) -> PlatformsConfig:
    """Each platform's settings as configured: the environment over the platforms file
    (`file`, else `HELPLINE_PLATFORMS_FILE`). Raises `ValueError` naming platform and field."""
    for name in os.environ:
        if name.upper().startswith("HELPLINE_PLATFORMS__"):
            slug = name[len("HELPLINE_PLATFORMS__") :].split("__", 1)[0].lower()
            if slug not in PLATFORM_SLUGS:
                raise ValueError(
                    f"invalid platform settings: {name} names no platform "
                    f"(known: {', '.join(PLATFORM_SLUGS)})"
                )
    if file is None and os.environ.get(FILE_ENV):
        file = Path(os.environ[FILE_ENV])
    data = read_platforms_file(file) if file is not None else {}

    class Loaded(PlatformsConfig):
        file_data: ClassVar[dict[str, Any]] = data

    try:
        config: PlatformsConfig = Loaded()
    except ValidationError as exc:
        raise ValueError(_explain(exc)) from None
    except SettingsError as exc:
        # A whole platform given as JSON (HELPLINE_PLATFORMS__TIKTOK='{...}') that does not
        # parse; the message names the field, never the value.
        field = str(exc).split('field "', 1)[-1].split('"', 1)[0]
        raise ValueError(
            f"invalid platform settings: platform {field}: HELPLINE_PLATFORMS__"
            f"{field.upper()} is not valid JSON"
        ) from None
    return config


def is_simulator(base_url: str) -> bool:
    """The endpoint is the simulator: a loopback host or the dev stacks' service name."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host in DEV_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(
    slug: str,
    config: PlatformConfig,
    settings: Settings,
    defaults: Mapping[str, Any],
    *,
    dev_anywhere: bool = False,
) -> PlatformSettings:
    """One platform's settings: its own values, else the global settings, else the
    adapter's `defaults` (path, settle_s, status_lookup, appeals, withdrawal, auth).
    `dev_anywhere` (tests only) allows the development credentials whatever the host."""
    base_url = config.base_url or settings.platform_base_url
    if problem := url_problem(base_url):
        raise ValueError(
            f"invalid platform settings: platform {slug}, field base_url: {problem} "
            "(HELPLINE_PLATFORM_BASE_URL, the global endpoint it takes)"
        )
    settle_s = config.settle_s
    if settle_s is None:
        settle_s = settings.platform_settle_s
    if settle_s is None:
        settle_s = float(defaults["settle_s"])
    timeout_s = config.timeout_s or settings.platform_timeout_s
    if settings.escalation_claim_lease_s <= 2 * (timeout_s + 1.0):
        raise ValueError(
            f"invalid platform settings: platform {slug}, field timeout_s: {timeout_s} s "
            f"leaves no room in HELPLINE_ESCALATION_CLAIM_LEASE_S "
            f"({settings.escalation_claim_lease_s} s must exceed twice timeout_s + 1 s)"
        )
    credentials, client_id, client_secret = (
        config.credentials,
        config.client_id,
        config.client_secret,
    )
    auth: str = defaults["auth"]
    needs = {
        "credentials": auth not in {"basic", "manual"},
        "client_id": auth in ("basic", "client_id_bearer"),
        "client_secret": auth == "basic",
    }
    missing = [name for name, needed in needs.items() if needed and getattr(config, name) is None]
    dev = False
    if missing:
        if not (dev_anywhere or is_simulator(base_url)):
            raise ValueError(
                f"invalid platform settings: platform {slug}, field {missing[0]}: no "
                f"credentials configured for {base_url} (set HELPLINE_PLATFORMS__"
                f"{slug.upper()}__{missing[0].upper()} or the platforms file); development "
                "credentials are used only against the simulator"
            )
        dev = True
        credentials = credentials or (
            SecretStr(f"dev-{slug}-credentials") if needs["credentials"] else None
        )
        client_id = client_id or (f"dev-{slug}-client" if needs["client_id"] else None)
        client_secret = client_secret or (
            SecretStr(f"dev-{slug}-secret") if needs["client_secret"] else None
        )
    return PlatformSettings(
        slug=slug,
        base_url=base_url,
        path=config.path or str(defaults["path"]),
        credentials=credentials,
        client_id=client_id,
        client_secret=client_secret,
        rate_per_s=config.rate_per_s or settings.platform_rate_per_s,
        concurrency=config.concurrency or settings.platform_concurrency,
        timeout_s=timeout_s,
        settle_s=float(settle_s),
        status_lookup=_choose(config.status_lookup, defaults["status_lookup"]),
        appeals=_choose(config.appeals, defaults["appeals"]),
        withdrawal=_choose(config.withdrawal, defaults["withdrawal"]),
        breaker_failures=config.breaker_failures,
        breaker_open_s=config.breaker_open_s,
        dev_credentials=dev,
    )


def _choose(value: bool | None, default: Any) -> bool:
    return bool(default) if value is None else value


def load_platform_settings(
    settings: Settings, *, file: Path | None = None, config: PlatformsConfig | None = None
) -> PlatformSettingsMap:
    """Every registered platform's resolved settings (see the module's promise)."""
    from helpline_escalator.adapters.registry import ADAPTERS

    config = config if config is not None else load_platforms_config(file)
    return PlatformSettingsMap(
        {
            slug: resolve(slug, getattr(config, slug), settings, cls.defaults())
            for slug, cls in ADAPTERS.items()
        }
    )
