"""Edges of the per-platform settings and adapters found by review: a malformed YAML file or
an endpoint that is not a URL is refused at start-up naming the file or the platform and
field (never quoting a secret); a notice whose harm type the adapter does not know still
carries a reason code the platform accepts; `Retry-After` is read in both forms HTTP allows
and an absurd one is ignored."""

from __future__ import annotations

import email.utils
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from helpline_escalator.adapters.base import Notice, PermanentError, PlatformResult
from helpline_escalator.adapters.notice_api import Reply, _retry_after
from helpline_escalator.adapters.registry import NOTICE_APIS
from helpline_escalator.platform_settings import load_platform_settings, load_platforms_config
from helpline_shared.settings import Settings
from tests.helpers import serve_simulator

SECRET = "s3cr3t-never-quoted-7731"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HELPLINE_PLATFORMS"):
            monkeypatch.delenv(name)


def test_a_malformed_yaml_file_is_refused_naming_the_file_and_never_the_secret(
    tmp_path: Path,
) -> None:
    file = tmp_path / "platforms.yaml"
    file.write_text(f'tiktok:\n  credentials: "{SECRET}\n  rate_per_s: [\n', encoding="utf-8")

    with pytest.raises(ValueError, match="not valid YAML") as caught:
        load_platforms_config(file)

    message = str(caught.value)
    assert "HELPLINE_PLATFORMS_FILE" in message
    assert str(file) in message
    assert "line" in message
    assert SECRET not in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    "base_url", ["not a url", "ftp://platform.example.net", "https://", "http://host:port"]
)
def test_an_endpoint_that_is_not_an_http_url_is_refused_naming_platform_and_field(
    monkeypatch: pytest.MonkeyPatch, base_url: str
) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__BASE_URL", base_url)
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", SECRET)

    with pytest.raises(ValueError, match="invalid platform settings") as caught:
        load_platform_settings(Settings())

    message = str(caught.value)
    assert "tiktok" in message
    assert "base_url" in message
    assert SECRET not in message


def test_a_real_endpoint_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__BASE_URL", "https://open.example.net:8443")
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", SECRET)

    assert load_platform_settings(Settings()).tiktok.base_url == "https://open.example.net:8443"


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[str]:
    async with serve_simulator() as url:
        yield url


@pytest.mark.parametrize("slug", sorted(NOTICE_APIS))
@pytest.mark.parametrize("harm_types", [(), ("a_harm_type_added_later",)])
async def test_a_notice_without_a_known_harm_type_is_accepted_by_its_platform(
    simulator: str, slug: str, harm_types: tuple[str, ...]
) -> None:
    """Without triage's reason code and with no harm type the adapter knows, the notice
    carries the platform's own code for "other", which the (strict) simulator accepts."""
    sent = Notice(
        client_reference=uuid.uuid4(),
        url="https://example.org/content/9",
        harm_types=harm_types,
        urgency="normal",
        explanation="Reported by a school.",
        notifier_name="Helpline Practitioner",
        notifier_email="practitioner@helpline.example",
    )
    async with aiohttp.ClientSession() as session:
        result = await NOTICE_APIS[slug](session, simulator).submit(sent)

    assert isinstance(result, PlatformResult)
    assert result.reference


def reply(value: str) -> Reply:
    return Reply(429, {"retry-after": value}, b"")


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert _retry_after(reply("7")) == 7.0
    assert _retry_after(reply("0")) == 0.0
    later = datetime.now(UTC) + timedelta(seconds=90)
    seconds = _retry_after(reply(email.utils.format_datetime(later, usegmt=True)))
    assert seconds is not None
    assert 80 <= seconds <= 91
    past = datetime.now(UTC) - timedelta(hours=1)
    assert _retry_after(reply(email.utils.format_datetime(past, usegmt=True))) == 0.0


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "soon", ""])
def test_an_absurd_retry_after_is_ignored(value: str) -> None:
    assert _retry_after(reply(value)) is None


def production_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every API platform's credentials, as a production deployment sets them."""
    for slug, cls in NOTICE_APIS.items():
        prefix = f"HELPLINE_PLATFORMS__{slug.upper()}__"
        monkeypatch.setenv(prefix + "CREDENTIALS", SECRET)
        if cls.auth in ("basic", "client_id_bearer"):
            monkeypatch.setenv(prefix + "CLIENT_ID", f"{slug}-id")
        if cls.auth == "basic":
            monkeypatch.setenv(prefix + "CLIENT_SECRET", SECRET)


PRODUCTION = Settings(platform_base_url="https://platform-gateway.example.net")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", ""),
        ("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", "   "),
        ("HELPLINE_PLATFORMS__SNAPCHAT__CLIENT_SECRET", ""),
        ("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", f"{SECRET}\r\nX-Injected: 1"),
        ("HELPLINE_PLATFORMS__TWITCH__CLIENT_ID", "twitch\nid"),
    ],
)
def test_an_empty_or_broken_credential_is_refused_at_start_up_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    production_credentials(monkeypatch)
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValueError, match="invalid platform settings") as caught:
        load_platform_settings(PRODUCTION)

    message = str(caught.value)
    slug, field = variable.removeprefix("HELPLINE_PLATFORMS__").lower().split("__")
    assert f"platform {slug}, field {field}" in message
    assert SECRET not in message


def test_a_secret_files_trailing_newline_is_not_part_of_the_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    production_credentials(monkeypatch)
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", SECRET + "\n")

    credentials = load_platform_settings(PRODUCTION).tiktok.credentials

    assert credentials is not None
    assert credentials.get_secret_value() == SECRET


def test_a_platform_given_as_json_that_does_not_parse_is_named_not_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK", f'{{"credentials": "{SECRET}", ')

    with pytest.raises(ValueError, match="platform tiktok") as caught:
        load_platforms_config()

    assert "HELPLINE_PLATFORMS__TIKTOK" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("platforms.YAML", "TikTok:\n  RATE_PER_S: 4\n  Concurrency: 2\n"),
        ("platforms.toml", "[PLATFORMS.TikTok]\nRATE_PER_S = 4\nconcurrency = 2\n"),
        ("platforms.JSON", '{"TIKTOK": {"Rate_Per_S": 4, "CONCURRENCY": 2}}'),
    ],
)
def test_a_files_names_are_read_whatever_their_case_as_the_environments_are(
    tmp_path: Path, name: str, text: str
) -> None:
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")

    tiktok = load_platform_settings(Settings(), file=file).tiktok

    assert (tiktok.rate_per_s, tiktok.concurrency) == (4.0, 2)


def test_a_file_giving_one_platform_twice_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "platforms.json"
    file.write_text('{"tiktok": {"rate_per_s": 4}, "TikTok": {"rate_per_s": 9}}', "utf-8")

    with pytest.raises(ValueError, match="given twice"):
        load_platforms_config(file)


def test_the_simulator_expects_the_credentials_the_escalator_reads_from_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One platforms file configures both sides alike (`helpline dev`), whatever the case
    of its names and with a secret's trailing newline."""
    from helpline_simulator.server import SimConfig

    file = tmp_path / "platforms.yaml"
    file.write_text(f'TikTok:\n  API_KEY: "{SECRET}\\n"\n', encoding="utf-8")
    monkeypatch.setenv("HELPLINE_PLATFORMS_FILE", str(file))

    escalator = load_platform_settings(Settings()).tiktok.credentials
    simulator = SimConfig.from_settings(Settings()).expects("tiktok", "credentials")

    assert escalator is not None
    assert escalator.get_secret_value() == simulator == SECRET


def test_an_endpoint_holding_credentials_is_refused_without_quoting_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "HELPLINE_PLATFORMS__TIKTOK__BASE_URL", f"https://partner:{SECRET}@open.example.net"
    )
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", "token")

    with pytest.raises(ValueError, match="platform tiktok, field base_url") as caught:
        load_platform_settings(Settings())

    assert SECRET not in str(caught.value)


def test_a_global_endpoint_that_is_not_a_url_is_refused_naming_a_platform_and_field() -> None:
    with pytest.raises(ValueError, match="field base_url") as caught:
        load_platform_settings(Settings(platform_base_url="simulator:8010"))

    assert "HELPLINE_PLATFORM_BASE_URL" in str(caught.value)


@pytest.mark.parametrize("slug", sorted(NOTICE_APIS))
@pytest.mark.parametrize("suffix", ["?x=1", "/../notices", "#frag"])
async def test_a_status_is_asked_for_exactly_the_reference_the_platform_gave(
    simulator: str, slug: str, suffix: str
) -> None:
    """A reference with a '/', '?', '#' or '..' stays one path segment: it names no
    other notice (here: the one whose reference it starts with) and no other route."""
    sent = Notice(
        client_reference=uuid.uuid4(),
        url="https://example.org/content/10",
        harm_types=("bullying_harassment",),
        urgency="normal",
        explanation="Reported by a school.",
        notifier_name="Helpline Practitioner",
        notifier_email="practitioner@helpline.example",
    )
    async with aiohttp.ClientSession() as session:
        adapter = NOTICE_APIS[slug](session, simulator)
        accepted = await adapter.submit(sent)
        assert (await adapter.status(accepted.reference)).reference == accepted.reference

        with pytest.raises(PermanentError, match="404"):
            await adapter.status(accepted.reference + suffix)
