"""The dev mail catcher: what aiosmtplib sends reaches an .eml file whole, and `helpline mail`
lists it (newest last) and shows its text; a taken port gives way to a free one, except for
`helpline mail catch`, which says so."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from helpline_cli.infra import free_port
from helpline_cli.mailcatcher import (
    MailCatcher,
    message_files,
    read_messages,
    start_catcher,
    text_of,
)


def helpline(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helpline_cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def receipt(to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Online Safety Helpline <helpline@example.org>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[MailCatcher]:
    c = start_catcher(tmp_path / "mail", "127.0.0.1", free_port())
    yield c
    c.stop()


async def test_a_message_sent_with_aiosmtplib_is_kept_whole(catcher: MailCatcher) -> None:
    text = "Your report is case HL-7K3M-Q9XZ.\nStatus: https://status.example/s/abc\n"
    msg = receipt("lead@school.example", "Report received: HL-7K3M-Q9XZ", text, "<p>html</p>")
    # A Bcc'd recipient is in the envelope only; the catcher keeps the envelope too.
    await aiosmtplib.send(
        msg,
        hostname=catcher.host,
        port=catcher.port,
        recipients=["lead@school.example", "duty@helpline.example"],
        start_tls=False,
    )
    [caught] = read_messages(catcher.directory)
    assert caught["Subject"] == "Report received: HL-7K3M-Q9XZ"
    assert caught["To"] == "lead@school.example"
    assert caught["X-Envelope-To"] == "lead@school.example, duty@helpline.example"
    assert caught["X-Envelope-From"] == "helpline@example.org"
    assert caught["X-Caught-At"]
    assert text_of(caught) == text  # the plain part, not the HTML alternative
    assert caught.get_body(preferencelist=("html",)) is not None
    # No half-written file is ever visible: only the finished .eml is there.
    assert [p.suffix for p in catcher.directory.iterdir()] == [".eml"]


async def test_login_is_accepted_so_dev_credentials_do_not_break_sending(
    catcher: MailCatcher,
) -> None:
    msg = receipt("a@example.org", "With a login", "text\n")
    await aiosmtplib.send(
        msg,
        hostname=catcher.host,
        port=catcher.port,
        username="dev",
        password="anything",
        start_tls=False,
    )
    assert [m["Subject"] for m in read_messages(catcher.directory)] == ["With a login"]


async def test_helpline_mail_lists_newest_last_and_shows_the_text(catcher: MailCatcher) -> None:
    for n in (1, 2, 3):
        await aiosmtplib.send(
            receipt(f"r{n}@example.org", f"Message {n}", f"Body of message {n}.\n"),
            hostname=catcher.host,
            port=catcher.port,
        )
    listed = helpline("mail", "list", "--dir", catcher.directory)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 3
    for n, line in enumerate(lines, start=1):
        number, day, time_, to, *subject = line.split()
        assert (number, to, " ".join(subject)) == (str(n), f"r{n}@example.org", f"Message {n}")
        assert len(day) == 10  # YYYY-MM-DD, then HH:MM:SS (UTC)
        assert len(time_) == 8

    shown = helpline("mail", "show", "2", "--dir", catcher.directory)
    assert shown.returncode == 0, shown.stderr
    assert "Body of message 2." in shown.stdout
    assert "message 1" not in shown.stdout
    assert "message 3" not in shown.stdout

    latest = helpline("mail", "show", "latest", "--dir", catcher.directory)
    assert latest.returncode == 0, latest.stderr
    assert "Body of message 3." in latest.stdout

    raw = helpline("mail", "show", "1", "--raw", "--dir", catcher.directory)
    assert "X-Envelope-To: r1@example.org" in raw.stdout
    assert "Subject: Message 1" in raw.stdout


def test_show_of_a_message_that_is_not_there_says_what_is(tmp_path: Path) -> None:
    empty = helpline("mail", "show", "latest", "--dir", tmp_path / "none")
    assert empty.returncode == 1
    assert "no message" in empty.stderr
    assert empty.stdout == ""
    listed = helpline("mail", "list", "--dir", tmp_path / "none")
    assert listed.returncode == 0
    assert listed.stdout == ""
    assert "no mail caught" in listed.stderr
    for which in ("0", "2", "first"):
        (tmp_path / "one").mkdir(exist_ok=True)
        (tmp_path / "one" / "20260101T000000.000000Z-00000000.eml").write_bytes(
            b"Subject: only\r\nTo: x@example.org\r\n\r\nonly one\r\n"
        )
        wrong = helpline("mail", "show", which, "--dir", tmp_path / "one")
        assert wrong.returncode == 1
        assert f"no message '{which}'" in wrong.stderr
        assert "holds 1 message(s)" in wrong.stderr


async def test_a_taken_port_gives_way_to_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        c = start_catcher(tmp_path / "mail", "127.0.0.1", taken)
        try:
            assert c.port != taken
            assert c.env() == {
                "HELPLINE_SMTP_HOST": "127.0.0.1",
                "HELPLINE_SMTP_PORT": str(c.port),
                "HELPLINE_SMTP_SECURITY": "none",
            }
            await aiosmtplib.send(receipt("a@example.org", "moved", "x\n"), port=c.port)
            assert [m["Subject"] for m in read_messages(c.directory)] == ["moved"]
        finally:
            c.stop()
        with pytest.raises(RuntimeError, match=f"port {taken} for the mail catcher is taken"):
            start_catcher(tmp_path / "mail", "127.0.0.1", taken, exact_port=True)


async def test_helpline_mail_catch_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    directory = tmp_path / "compose-mail"
    command = ["mail", "catch", "--port", str(port), "--dir", str(directory)]
    proc = subprocess.Popen(  # noqa: ASYNC220 (a long-lived process, read from a thread)
        [sys.executable, "-m", "helpline_cli.main", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert first.startswith(f"mail catcher smtp://127.0.0.1:{port} "), first
        await aiosmtplib.send(receipt("a@example.org", "to compose", "x\n"), port=port)
        assert len(message_files(directory)) == 1
        # aiosmtpd's own log lines (senders, recipients) are kept out of the output.
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(asyncio.to_thread(proc.stdout.read), 30)
        assert "a@example.org" not in first + rest
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stdout is not None
        proc.stdout.close()


def test_dev_points_the_services_at_the_catcher_unless_smtp_was_configured(
    catcher: MailCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpline_cli.dev import mail_env

    for name in ("HELPLINE_SMTP_HOST", "HELPLINE_SMTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    from helpline_shared.settings import Settings

    assert mail_env(Settings(), catcher) == catcher.env()
    assert mail_env(Settings(smtp_host="relay.example.org"), catcher) == {}
    assert mail_env(Settings(smtp_port=2525), catcher) == {}


def test_dev_status_links_follow_notify_to_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpline_cli.dev import status_links

    for name in ("HELPLINE_NOTIFY_PORT", "HELPLINE_STATUS_BASE_URL", "HELPLINE_HTTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    from helpline_shared.settings import Settings

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        # notify's default port taken: it moves, and the links with it.
        default = Settings.model_construct(  # as if at its default: not set by anyone
            _fields_set=set(),
            **{**Settings().model_dump(), "notify_port": taken, "http_host": "127.0.0.1"},
        )
        moved, env = status_links(default)
        assert moved.notify_port != taken
        assert env == {
            "HELPLINE_NOTIFY_PORT": str(moved.notify_port),
            "HELPLINE_STATUS_BASE_URL": f"http://127.0.0.1:{moved.notify_port}",
        }
        # A port chosen is kept (Stack says when it is taken); a base URL set is left alone.
        chosen = Settings(notify_port=taken, http_host="0.0.0.0")
        assert status_links(chosen) == (
            chosen,
            {"HELPLINE_STATUS_BASE_URL": f"http://127.0.0.1:{taken}"},
        )
        public = Settings(status_base_url="https://status.example.org")
        assert status_links(public) == (public, {})
