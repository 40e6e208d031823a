"""The local SMTP catcher of `helpline dev` (and of compose): every email the services send
lands as one .eml file in a directory instead of leaving the machine.

It is an aiosmtpd server that accepts any sender, any recipient and any login (so a dev
setup with SMTP credentials still works), and keeps each message whole, as received, with
three headers of its own in front: `X-Caught-At` (when it arrived, UTC, ISO 8601),
`X-Envelope-From` and `X-Envelope-To` (the SMTP envelope, which a Bcc leaves out of the
headers). Promises:

- A message is accepted (250) only once its file is complete on disk: it is written under
  a temporary name and renamed, so a reader never sees half of one.
- File names sort in the order the messages arrived (a UTC timestamp to the microsecond,
  then a random suffix), so `read_messages` returns them oldest first, newest last.
- Nothing is logged about a message but its file name: the addresses and the text of
  reporters' email stay in the directory (a dev machine's data directory).

`read_messages(directory)` is how `helpline mail` and the tests read what was caught.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from helpline_cli.infra import free_port, port_is_free

log = structlog.get_logger("helpline.mailcatcher")
# aiosmtpd logs every SMTP line, senders and recipients included, at INFO on "mail.log":
# reporters' addresses must not reach the logs, so only its warnings and errors do.
logging.getLogger("mail.log").setLevel(logging.WARNING)

SUFFIX = ".eml"


def _accept_any_login(*_: Any) -> AuthResult:
    """Dev catcher: whatever SMTP credentials the services were given are fine."""
    return AuthResult(success=True)


class _Store:
    """aiosmtpd handler: each message into `directory` as one .eml file (see module doc)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        caught_at = datetime.now(UTC)
        raw = envelope.original_content or b""
        if not raw and isinstance(envelope.content, str):
            raw = envelope.content.encode("utf-8", "surrogateescape")
        elif not raw and isinstance(envelope.content, bytes):
            raw = envelope.content
        head = (
            f"X-Caught-At: {caught_at.isoformat()}\r\n"
            f"X-Envelope-From: {envelope.mail_from or ''}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "surrogateescape")
        name = f"{caught_at.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(4)}{SUFFIX}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.directory / f".{name}.partial"
            partial.write_bytes(head + raw)
            os.replace(partial, self.directory / name)
        except OSError as exc:
            log.error("mail_not_stored", error=type(exc).__name__)
            return "451 Requested action aborted: the catcher could not store the message"
        log.info("mail_caught", file=name)
        return "250 Message accepted for delivery"


@dataclass
class MailCatcher:
    """A running catcher; `stop()` ends it. `url` is where the services send mail."""

    directory: Path
    host: str
    port: int
    controller: Controller

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The services' settings that send their mail here (plain SMTP, no TLS)."""
        return {
            "HELPLINE_SMTP_HOST": self.host,
            "HELPLINE_SMTP_PORT": str(self.port),
            "HELPLINE_SMTP_SECURITY": "none",
        }

    def stop(self) -> None:
        self.controller.stop()


def start_catcher(
    directory: Path, host: str = "127.0.0.1", port: int = 1025, *, exact_port: bool = False
) -> MailCatcher:
    """Start a catcher storing into `directory` (created) on `host:port`, or on a free port
    when that one is taken (unless `exact_port`: then an error says so). It runs on a thread
    of its own, so it works beside any event loop; it is ready when this returns."""
    directory.mkdir(parents=True, exist_ok=True)
    if port == 0 or not port_is_free(host, port):
        if exact_port and port != 0:
            raise RuntimeError(f"port {port} for the mail catcher is taken on {host}")
        port = free_port(host)
    controller = Controller(
        _Store(directory),
        hostname=host,
        port=port,
        authenticator=_accept_any_login,
        auth_require_tls=False,
    )
    controller.start()
    return MailCatcher(directory, host, port, controller)


def message_files(directory: Path) -> list[Path]:
    """The caught messages' files, oldest first (their names sort by arrival)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == SUFFIX and p.is_file())


def read_message(path: Path) -> EmailMessage:
    with path.open("rb") as f:
        message = email.message_from_binary_file(f, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # the default policy's message class
    return message


def read_messages(directory: Path) -> list[EmailMessage]:
    """Every message caught in `directory`, oldest first; none when it does not exist."""
    return [read_message(p) for p in message_files(directory)]


def text_of(message: EmailMessage) -> str:
    """The message's plain-text part (what a person reads), or "" when it has none."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    return content if isinstance(content, str) else ""


async def serve(directory: Path, host: str, port: int) -> int:
    """`helpline mail catch`: a catcher on exactly `host:port` until SIGTERM or Ctrl-C
    (exit 0); its first line of output says it is ready."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    catcher = await asyncio.to_thread(start_catcher, directory, host, port, exact_port=True)
    try:
        print(
            f"mail catcher {catcher.url} storing into {directory}/ (helpline mail list)", flush=True
        )
        await stop.wait()
    finally:
        await asyncio.to_thread(catcher.stop)
    return 0
