"""`helpline reporter erase <case id or email>`: remove a reporter's personal data.

Prints what it erased as counts and case ids, never the personal data. Exit codes: 0 when
the data is gone (erased now, or nothing left to erase: "nothing to erase", so running it
again is safe), 1 for a case id no case has, 2 for bad arguments, a missing database URL or
a refused confirmation. Without `--yes` it asks first, and refuses when stdin is not a
terminal.
"""

from __future__ import annotations

import argparse
import getpass
import sys

import asyncpg

from helpline_intake import erasure
from helpline_shared.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reporter = sub.add_parser("reporter", help="a reporter's personal data")
    actions = reporter.add_subparsers(dest="action", required=True)
    erase = actions.add_parser(
        "erase", help="erase a reporter's personal data; the anonymised cases still count"
    )
    erase.add_argument("target", metavar="CASE_ID_OR_EMAIL")
    erase.add_argument("--by", default=None, help="who asks (default: the login name)")
    erase.add_argument("--reason", default=None, help="why, for the audit row")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _confirm(found: erasure.Found) -> bool:
    if not sys.stdin.isatty():
        print("not a terminal: add --yes to erase", file=sys.stderr)
        return False
    prompt = (
        f"erase the reporter's personal data from {len(found.case_ids)} case(s) and "
        f"{found.rejections} refused message(s)? [y/N] "
    )
    return input(prompt).strip().lower() in ("y", "yes")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        print("set HELPLINE_DATABASE_URL", file=sys.stderr)
        return 2
    try:
        target = erasure.Target.parse(args.target)
    except ValueError as exc:
        print(f"helpline reporter erase: {exc}", file=sys.stderr)
        return 2
    by = args.by or getpass.getuser()
    conn = await asyncpg.connect(settings.database_url)
    try:
        try:
            found = await erasure.find(conn, target)
            if not found.nothing and not args.yes and not _confirm(found):
                print("nothing erased", file=sys.stderr)
                return 2
            done = await erasure.erase(conn, target, by=by, reason=args.reason)
        except erasure.UnknownCaseError:
            print(f"no case {target.case_id}", file=sys.stderr)
            return 1
        earlier = target.email is not None and await erasure.was_erased(conn, target.email)
    finally:
        await conn.close()
    if done.erasure_id is None:
        why = (
            "the case's reporter was already erased"
            if done.already_erased
            else "an earlier erasure matched this email"
            if earlier
            else "no case or refused message holds this email"
        )
        print(f"nothing to erase: {why}")
        return 0
    print(f"erasure {done.erasure_id} by {by}, matched by {target.matched_by}:")
    print(f"  intake.reports: reporter erased in {len(done.case_ids)} case(s)")
    print(f"  intake.rejections: original bytes cleared in {done.rejections} refusal(s)")
    for case_id in done.case_ids:
        print(f"  case {case_id}")
    return 0
