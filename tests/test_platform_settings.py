"""Each platform's own settings: from the environment and a platforms file (the environment
wins), falling back to the global settings; refused at start-up with the platform and field
named; credentials never shown; development credentials only against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from helpline_escalator.adapters.base import PlatformAdapter
from helpline_escalator.adapters.registry import ADAPTERS, MANUAL_CHANNELS, NOTICE_APIS
from helpline_escalator.app import create_app, worker_settings
from helpline_escalator.dispatcher import PlatformWorker
from helpline_escalator.platform_settings import (
    PLATFORM_SLUGS,
    is_simulator,
    load_platform_settings,
    load_platforms_config,
)
from helpline_shared.settings import Settings
from helpline_triage.rules import RuleSet

SECRET = "s3cr3t-never-shown-0451"
PRODUCTION = Settings(platform_base_url="https://platform-gateway.example.net")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HELPLINE_PLATFORMS"):
            monkeypatch.delenv(name)


def production_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a production deployment must configure: each API platform's credentials."""
    for slug, cls in NOTICE_APIS.items():
        prefix = f"HELPLINE_PLATFORMS__{slug.upper()}__"
        if cls.auth == "basic":
            monkeypatch.setenv(prefix + "CLIENT_ID", f"{slug}-id")
            monkeypatch.setenv(prefix + "CLIENT_SECRET", SECRET)
        else:
            monkeypatch.setenv(prefix + "CREDENTIALS", SECRET)
            if cls.auth == "client_id_bearer":
                monkeypatch.setenv(prefix + "CLIENT_ID", f"{slug}-id")


def test_every_platform_triage_recognises_has_settings_and_an_adapter() -> None:
    recognised = set(RuleSet.load().data["report_platforms"])
    assert set(PLATFORM_SLUGS) == recognised
    assert set(ADAPTERS) == recognised
    assert not set(NOTICE_APIS) & set(MANUAL_CHANNELS)


def test_without_settings_every_platform_takes_the_global_values() -> None:
    settings = Settings(
        platform_rate_per_s=7.0,
        platform_concurrency=3,
        platform_timeout_s=4.0,
        platform_settle_s=9.0,
    )
    platforms = load_platform_settings(settings)

    assert set(platforms) == set(ADAPTERS)
    for slug, p in platforms.items():
        assert (p.rate_per_s, p.concurrency, p.timeout_s, p.settle_s) == (7.0, 3, 4.0, 9.0)
        assert p.base_url == settings.platform_base_url
        assert p.breaker_failures == 5
        assert p.breaker_open_s == 30.0
        if slug in NOTICE_APIS:
            assert p.endpoint == f"{settings.platform_base_url}/{slug}/v1/notices"
            assert p.dev_credentials  # the simulator's, since nothing is configured


def test_the_adapters_own_settle_period_applies_unless_overridden() -> None:
    platforms = load_platform_settings(Settings())
    for slug, cls in ADAPTERS.items():
        assert platforms[slug].settle_s == cls.settle_s


def test_the_environment_sets_one_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S", "5")
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__CONCURRENCY", "2")
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__BREAKER_FAILURES", "3")
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__BREAKER_OPEN_S", "12.5")
    monkeypatch.setenv("HELPLINE_PLATFORMS__YOUTUBE__APPEALS", "false")
    monkeypatch.setenv("HELPLINE_PLATFORMS__X__PATH", "/2/notices")

    platforms = load_platform_settings(Settings())

    assert platforms.tiktok.rate_per_s == 5.0
    assert platforms["tiktok"].concurrency == 2
    assert (platforms.tiktok.breaker_failures, platforms.tiktok.breaker_open_s) == (3, 12.5)
    assert platforms.instagram.rate_per_s == Settings().platform_rate_per_s
    assert platforms.instagram.breaker_failures == 5
    assert platforms.youtube.appeals is False
    assert platforms.instagram.appeals is True  # Meta's default
    assert platforms.x.endpoint.endswith("/2/notices")


def test_the_environment_overrides_the_file_which_overrides_the_global(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    file = tmp_path / "platforms.toml"
    file.write_text(
        "[tiktok]\nrate_per_s = 3\nconcurrency = 4\n\n"
        '[youtube]\napi_key = "from-the-file"\nsettle_s = 120\n'
    )
    monkeypatch.setenv("HELPLINE_PLATFORMS_FILE", str(file))
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S", "5")

    platforms = load_platform_settings(Settings(platform_concurrency=9))

    assert platforms.tiktok.rate_per_s == 5.0  # the environment
    assert platforms.tiktok.concurrency == 4  # the file
    assert platforms.instagram.concurrency == 9  # the global setting
    assert platforms.youtube.settle_s == 120.0
    assert platforms.youtube.credentials is not None
    assert platforms.youtube.credentials.get_secret_value() == "from-the-file"
    assert not platforms.youtube.dev_credentials


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_json_and_yaml_files_with_a_platforms_table(tmp_path: Path, suffix: str) -> None:
    data = {"platforms": {"reddit": {"rate_per_s": 0.5, "client_id": "r-id"}}}
    file = tmp_path / f"platforms{suffix}"
    if suffix == ".json":
        file.write_text(json.dumps(data))
    else:
        file.write_text("platforms:\n  reddit:\n    rate_per_s: 0.5\n    client_id: r-id\n")

    platforms = load_platform_settings(Settings(), file=file)

    assert platforms.reddit.rate_per_s == 0.5
    assert platforms.reddit.client_id == "r-id"


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S", "0", "rate_per_s"),
        ("HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S", "fast", "rate_per_s"),
        ("HELPLINE_PLATFORMS__TIKTOK__CONCURRENCY", "0", "concurrency"),
        ("HELPLINE_PLATFORMS__TIKTOK__TIMEOUT_S", "-1", "timeout_s"),
        ("HELPLINE_PLATFORMS__TIKTOK__SETTLE_S", "nan", "settle_s"),
        ("HELPLINE_PLATFORMS__TIKTOK__BREAKER_FAILURES", "0", "breaker_failures"),
        ("HELPLINE_PLATFORMS__TIKTOK__BREAKER_OPEN_S", "0", "breaker_open_s"),
        ("HELPLINE_PLATFORMS__TIKTOK__PATH", "no-slash", "path"),
        ("HELPLINE_PLATFORMS__TIKTOK__TIMEOUT_S", "100", "timeout_s"),  # beyond the lease
    ],
)
def test_an_invalid_value_names_the_platform_and_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", SECRET)

    with pytest.raises(ValueError, match="platform settings") as caught:
        load_platform_settings(Settings())

    message = str(caught.value)
    assert "tiktok" in message
    assert field in message
    assert SECRET not in message


def test_a_file_naming_an_unknown_platform_or_field_is_refused(tmp_path: Path) -> None:
    unknown_platform = tmp_path / "a.toml"
    unknown_platform.write_text("[myspace]\nrate_per_s = 1\n")
    unknown_field = tmp_path / "b.toml"
    unknown_field.write_text("[tiktok]\nrate_per_second = 1\n")

    with pytest.raises(ValueError, match="myspace"):
        load_platforms_config(unknown_platform)
    with pytest.raises(ValueError, match=r"tiktok.*rate_per_second"):
        load_platforms_config(unknown_field)


def test_a_variable_naming_an_unknown_platform_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOKK__RATE_PER_S", "3")
    with pytest.raises(ValueError, match="HELPLINE_PLATFORMS__TIKTOKK__RATE_PER_S names no"):
        load_platforms_config()


def test_an_unreadable_or_malformed_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[tiktok\n")
    with pytest.raises(ValueError, match="not valid"):
        load_platforms_config(broken)
    with pytest.raises(ValueError, match="cannot read"):
        load_platforms_config(tmp_path / "missing.toml")
    (tmp_path / "platforms.ini").write_text("")
    with pytest.raises(ValueError, match=r"\.toml, \.json or \.yaml"):
        load_platforms_config(tmp_path / "platforms.ini")


def test_production_without_credentials_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="no credentials configured") as caught:
        load_platform_settings(PRODUCTION)
    assert "HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS" in str(caught.value)


def test_production_with_credentials_uses_them_and_never_the_dev_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    production_credentials(monkeypatch)

    platforms = load_platform_settings(PRODUCTION)

    for slug in NOTICE_APIS:
        p = platforms[slug]
        assert not p.dev_credentials
        secrets = [s.get_secret_value() for s in (p.credentials, p.client_secret) if s]
        assert secrets == [SECRET], slug
    for slug in MANUAL_CHANNELS:  # nothing to send, so nothing to configure
        assert platforms[slug].credentials is None


def test_the_credentials_alias_api_key_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__YOUTUBE__API_KEY", "key-1")
    monkeypatch.setenv("HELPLINE_PLATFORMS__X__TOKEN", "token-1")
    config = load_platforms_config()
    assert config.youtube.credentials == SecretStr("key-1")
    assert config.x.credentials == SecretStr("token-1")


@pytest.mark.parametrize(
    ("url", "simulator"),
    [
        ("http://127.0.0.1:8010", True),
        ("http://localhost:8010", True),
        ("http://[::1]:8010", True),
        ("http://simulator:8010", True),  # docker compose
        ("http://helpline-simulator:8010", True),  # the Kubernetes dev overlay
        ("https://platform-gateway.example.net", False),
        ("https://simulator.example.net", False),
        ("https://CHANGE_ME-platform-gateway", False),
    ],
)
def test_development_credentials_only_for_the_simulator(url: str, simulator: bool) -> None:
    assert is_simulator(url) is simulator


def test_secrets_are_never_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    production_credentials(monkeypatch)
    config = load_platforms_config()
    platforms = load_platform_settings(PRODUCTION, config=config)

    shown = [repr(config), str(config), repr(platforms), repr(platforms.tiktok)]
    shown += [repr(config.snapchat), str(platforms.snapchat)]
    assert all(SECRET not in text for text in shown)
    assert "**********" in repr(platforms.tiktok)


def test_a_worker_runs_with_its_platforms_own_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S", "0.5")
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__SETTLE_S", "2.5")
    settings = Settings()
    platforms = load_platform_settings(settings)

    def worker(slug: str) -> PlatformWorker:
        adapter: PlatformAdapter = NOTICE_APIS[slug](None, platforms[slug])  # type: ignore[arg-type]
        return PlatformWorker(adapter, None, None, worker_settings(settings, platforms[slug]))  # type: ignore[arg-type]

    slow, normal = worker("tiktok"), worker("youtube")
    # 0.5 calls/s x 60 s half-lease / 2 loops: the rate bounds tiktok's claims, not youtube's
    assert slow.claim_limit() == 15
    assert normal.claim_limit() == 87
    assert slow.settle_s() == 2.5
    assert normal.settle_s() == NOTICE_APIS["youtube"].settle_s


def test_the_escalator_refuses_invalid_platform_settings_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__REDDIT__CONCURRENCY", "-3")
    with pytest.raises(ValueError, match=r"platform reddit, field concurrency"):
        create_app(Settings(database_url="postgresql://nowhere.invalid/helpline"))
