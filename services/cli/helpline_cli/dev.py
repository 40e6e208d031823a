"""`helpline dev`: the whole system on this machine, embedded defaults, one Ctrl-C to stop.

Once up it prints a development API key with every scope (its submit scope bound to the
source `dev`) on a line of its own, `dev key: hk_...`, and, when it started the embedded
database, the `export HELPLINE_DATABASE_URL=...` line that lets commands in another shell
(`helpline keys create`, `helpline reporter erase`) reach it. The key is kept in
`data_dir/dev-key` (mode 0600) and reused while it is live in the database; otherwise a
new one is made. Unless HELPLINE_SESSION_SECRET is set, the services share a session
secret kept in `data_dir/session-secret` (0600), so a practitioner's sign-in holds across
services and restarts.

Mail goes to a local SMTP catcher (:mod:`helpline_cli.mailcatcher`) that dev starts on
HELPLINE_MAIL_CATCHER_SMTP_PORT (1025), or on a free port when that one is taken; it keeps
every message as an .eml file in `data_dir/mail`, read with `helpline mail list` and
`helpline mail show N|latest`. The services send there (their HELPLINE_SMTP_* point at it)
unless HELPLINE_SMTP_HOST or HELPLINE_SMTP_PORT was set, which then wins. The status links
in the emails open notify's pages on this machine (HELPLINE_STATUS_BASE_URL is notify's
address, its port moved to a free one when 8006 is taken), unless the base URL was set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from helpline_cli import stack as stack_module
from helpline_cli.infra import free_port, port_is_free
from helpline_cli.mailcatcher import MailCatcher, start_catcher
from helpline_cli.stack import Stack
from helpline_shared import apikeys
from helpline_shared.settings import Settings

DEV_SOURCE = "dev"


def _masked(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), whatever it was before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    path.chmod(0o600)


def _read_private(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def session_secret(settings: Settings) -> dict[str, str]:
    """The environment that gives every service one session secret (see the module doc)."""
    if settings.session_secret is not None:
        return {}
    path = settings.data_dir / "session-secret"
    secret = _read_private(path)
    if secret is None:
        secret = secrets.token_urlsafe(32)
        _write_private(path, secret)
    return {"HELPLINE_SESSION_SECRET": secret}


async def dev_key(database_url: str, data_dir: Path) -> str:
    """The development key with every scope: the kept one while it is live and still has
    every scope, else a new one (then kept)."""
    path = data_dir / "dev-key"
    kept = _read_private(path)
    conn = await asyncpg.connect(database_url)
    try:
        if kept is not None:
            info = await apikeys.verify(conn, kept)
            if (
                info is not None
                and info.scopes == frozenset(apikeys.SCOPES)
                and info.source == DEV_SOURCE
            ):
                path.chmod(0o600)
                return kept
        _, key = await apikeys.create(
            conn, apikeys.SCOPES, DEV_SOURCE, "helpline dev: every scope", "helpline dev"
        )
    finally:
        await conn.close()
    _write_private(path, key)
    return key


def _commands_hint(settings: Settings, database_url: str) -> str:
    """How another shell's commands (`helpline keys`, `helpline reporter erase`, ...) reach
    the database this dev stack started, which they otherwise cannot find: the URL to
    export, printed only when dev started the embedded database (it has no password)."""
    if settings.database_url is not None or urlsplit(database_url).password:
        return ""
    return (
        "In another shell, commands such as helpline keys need this database:\n"
        f"  export HELPLINE_DATABASE_URL='{database_url}'\n"
    )


def mail_env(settings: Settings, catcher: MailCatcher) -> dict[str, str]:
    """The services' SMTP settings: the catcher's, unless SMTP was configured."""
    if {"smtp_host", "smtp_port"} & settings.model_fields_set:
        return {}
    return catcher.env()


def status_links(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """Settings and environment under which the receipts' status links open notify's pages
    here: notify's port (a free one when its default is taken and none was chosen) and the
    base URL at it, unless HELPLINE_STATUS_BASE_URL was set."""
    if "status_base_url" in settings.model_fields_set:
        return settings, {}
    host = settings.http_host
    port = settings.notify_port
    env: dict[str, str] = {}
    if "notify_port" not in settings.model_fields_set and not port_is_free(host, port):
        port = free_port(host)
        env["HELPLINE_NOTIFY_PORT"] = str(port)
        settings = settings.model_copy(update={"notify_port": port})
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    env["HELPLINE_STATUS_BASE_URL"] = f"http://{reachable}:{port}"
    return settings, env


def _mail_line(settings: Settings, catcher: MailCatcher) -> str:
    line = f"mail catcher {catcher.url} (helpline mail list)"
    if not mail_env(settings, catcher):
        line += f"; the services send to the configured {settings.smtp_host}:{settings.smtp_port}"
    return line


async def run_dev(settings: Settings) -> int:
    log_dir = settings.data_dir / "logs"
    print("helpline dev: starting broker, database, topics, migrations ...", flush=True)
    catcher = await asyncio.to_thread(
        start_catcher, settings.data_dir / "mail", "127.0.0.1", settings.mail_catcher_smtp_port
    )
    try:
        return await _run_with_catcher(settings, log_dir, catcher)
    finally:
        await asyncio.to_thread(catcher.stop)


async def _run_with_catcher(settings: Settings, log_dir: Path, catcher: MailCatcher) -> int:
    settings, links = status_links(settings)
    extra_env = {**session_secret(settings), **mail_env(settings, catcher), **links}
    stack = await Stack.prepare(settings, log_dir=log_dir, extra_env=extra_env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stack.start_services()
        s = stack.settings
        key = await dev_key(s.database_url or "", settings.data_dir)
        casework = (
            f"  casework    {stack.url('casework')}  (GET /v1/cases, practitioner pages at /)\n"
            if "casework" in stack_module.SERVICES
            else ""
        )
        notify = (
            f"  notify      {stack.url('notify')}  (the status pages the emails link to)\n"
            if "notify" in stack_module.SERVICES
            else ""
        )
        print(
            "\nhelpline dev is up:\n"
            f"  broker      {s.kafka_bootstrap_servers}\n"
            f"  database    {_masked(s.database_url or '')}\n"
            f"  intake      {stack.url('intake')}  (POST /v1/reports, web form at /report)\n"
            f"  triage      {stack.url('triage')}\n"
            f"  escalator   {stack.url('escalator')}\n"
            f"  metrics     {stack.url('metrics')}  (GET /v1/totals, /dashboard, GET /metrics)\n"
            f"{casework}"
            f"{notify}"
            f"  simulator   {stack.url('simulator')}  (GET /_sim/stats)\n"
            f"  logs        {log_dir}/\n"
            f"{_mail_line(settings, catcher)}\n"
            "Publish a report: helpline publish examples/report.json\n"
            "Every API needs a key: send 'Authorization: Bearer <key>' with the dev key below\n"
            "(every scope; it submits reports for source dev). More: helpline keys create\n"
            f"{_commands_hint(settings, s.database_url or '')}"
            "Ctrl-C stops everything.",
            flush=True,
        )
        print(f"dev key: {key}", flush=True)
        while not stop.is_set():
            if dead := stack.dead():
                print(f"helpline dev: {', '.join(dead)} exited; see {log_dir}/", flush=True)
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return 0
    finally:
        print("helpline dev: stopping ...", flush=True)
        await asyncio.to_thread(stack.stop, settings.graceful_timeout_s + 5)
        print("helpline dev: stopped.", flush=True)
