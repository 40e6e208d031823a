"""`helpline mail`: the dev mail catcher's messages, and the catcher itself for compose.

- `helpline mail list`: one line per caught message, oldest first, newest last: its number,
  when it arrived (UTC), to whom, its subject.
- `helpline mail show N|latest`: the plain-text part of message N (numbers as `list` shows
  them) or of the newest; `--raw` prints the whole message as caught.
- `helpline mail catch`: run the catcher in the foreground (compose runs it this way; `helpline
  dev` starts its own).

They read (and the catcher writes) `data_dir/mail` unless `--dir` names another directory.
These commands print reporters' addresses and text: they are for a dev machine's catcher,
whose mail never left it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from helpline_cli import mailcatcher
from helpline_shared.settings import Settings


def add_parser(sub: Any) -> None:
    mail = sub.add_parser("mail", help="the dev mail catcher: list and show what it caught")
    actions = mail.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="caught messages: time, to, subject (newest last)")
    show = actions.add_parser("show", help="the text of a caught message")
    show.add_argument("which", metavar="N|latest", help="its number in `helpline mail list`")
    show.add_argument("--raw", action="store_true", help="the whole message, headers and all")
    catch = actions.add_parser("catch", help="run the SMTP catcher in the foreground")
    catch.add_argument("--host", default="127.0.0.1", help="listen here (default: 127.0.0.1)")
    catch.add_argument(
        "--port", type=int, default=None, help="default: HELPLINE_MAIL_CATCHER_SMTP_PORT (1025)"
    )
    for p in (listing, show, catch):
        p.add_argument("--dir", default=None, help="the catcher's directory (data_dir/mail)")


def mail_dir(settings: Settings, given: str | None = None) -> Path:
    return Path(given) if given else settings.data_dir / "mail"


def _when(message: EmailMessage) -> str:
    caught = message.get("X-Caught-At")
    if caught:
        try:
            return datetime.fromisoformat(str(caught)).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            pass
    return str(message.get("Date", "-"))


def _line(n: int, message: EmailMessage) -> str:
    to = str(message.get("To") or message.get("X-Envelope-To") or "-")
    subject = str(message.get("Subject") or "(no subject)")
    return f"{n:>4}  {_when(message)}  {to}  {subject}"


def _pick(files: list[Path], which: str) -> Path | None:
    if which == "latest":
        return files[-1] if files else None
    if not which.isdigit() or not 1 <= int(which) <= len(files):
        return None
    return files[int(which) - 1]


async def run(args: argparse.Namespace, settings: Settings) -> int:
    directory = mail_dir(settings, args.dir)
    if args.action == "catch":
        port = settings.mail_catcher_smtp_port if args.port is None else args.port
        try:
            return await mailcatcher.serve(directory, args.host, port)
        except (RuntimeError, OSError) as exc:
            print(f"helpline mail catch: {exc}", file=sys.stderr)
            return 1
    files = mailcatcher.message_files(directory)
    if args.action == "list":
        if not files:
            print(f"no mail caught in {directory}/", file=sys.stderr)
        for n, listed in enumerate(files, start=1):
            print(_line(n, mailcatcher.read_message(listed)))
        return 0
    path = _pick(files, args.which)
    if path is None:
        count = f"{len(files)} message(s)" if files else "no message"
        print(
            f"helpline mail show: no message {args.which!r}: {directory}/ holds {count} "
            "(give a number from `helpline mail list`, or latest)",
            file=sys.stderr,
        )
        return 1
    if args.raw:
        sys.stdout.write(path.read_bytes().decode("utf-8", "replace"))
        return 0
    message = mailcatcher.read_message(path)
    print(_line(files.index(path) + 1, message))
    print()
    text = mailcatcher.text_of(message)
    print(text if text else "(this message has no plain-text part; see --raw)")
    return 0
