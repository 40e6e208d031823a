"""`helpline keys create|list|revoke`: manage the API keys in `access.api_keys`.

`create` prints what it made and then the new key alone on its last line; the key is shown
this once and cannot be recovered (only its hash is kept). `list` shows every key's id,
name, scopes, source and times, never a secret or hash. `revoke KEY_ID` (or the whole key,
whose id it reads and prints, never its secret) stops a key at once: every service reads
the key's row on each request.
Exit codes: 0 done, 1 no key has this id, 2 bad arguments or no database URL.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import datetime

import asyncpg

from helpline_shared import apikeys
from helpline_shared.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys for the HTTP APIs")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key; it is printed once, last")
    create.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help=f"one of {', '.join(apikeys.SCOPES)}; repeat (or separate with commas) for several",
    )
    create.add_argument("--source", default=None, help="the source a submit key may submit for")
    create.add_argument("--name", default="", help="what the key is for, shown in lists")
    create.add_argument("--by", default=None, help="who creates it (default: the login name)")
    actions.add_parser("list", help="every key, without secrets")
    revoke = actions.add_parser("revoke", help="revoke a key from now on")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (or the whole key)")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def _login_name() -> str:
    """Who runs the command, for `created_by`; a container's user often has no login name
    (no passwd entry, no USER), which must not stop a key being made."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _scopes(given: list[str]) -> list[str]:
    """`--scope read --scope practitioner` or `--scope read,practitioner`, spaces ignored."""
    return [s.strip() for arg in given for s in arg.split(",") if s.strip()]


def _key_id(given: str) -> str:
    """The key id named: the id itself, or taken from a whole key `hk_<id>_<secret>`."""
    given = given.strip()
    if given.startswith(apikeys.PREFIX):
        return given.removeprefix(apikeys.PREFIX).split("_", 1)[0]
    return given


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "create":
        args.scope = _scopes(args.scope)
        try:
            apikeys.check_request(args.scope, args.source)
        except apikeys.KeyRequestError as exc:
            print(f"helpline keys create: {exc}", file=sys.stderr)
            return 2
    if not settings.database_url:
        print("set HELPLINE_DATABASE_URL", file=sys.stderr)
        return 2
    conn = await asyncpg.connect(settings.database_url)
    try:
        if args.action == "create":
            by = args.by or _login_name()
            key_id, key = await apikeys.create(conn, args.scope, args.source, args.name, by)
            scopes, source = apikeys.check_request(args.scope, args.source)
            bound = f" for source {source}" if source else ""
            print(f"key {key_id} created by {by}: scopes {','.join(scopes)}{bound}")
            print("shown once, store it now; send it as 'Authorization: Bearer <key>':")
            print(key)
            return 0
        if args.action == "list":
            print("key_id\tname\tscopes\tsource\tcreated\tcreated_by\trevoked\tlast_used")
            for k in await apikeys.list_keys(conn):
                held = ",".join(s for s in apikeys.SCOPES if s in k.scopes)
                print(
                    f"{k.key_id}\t{' '.join(k.name.split()) or '-'}\t{held}\t{k.source or '-'}"
                    f"\t{_when(k.created_at)}\t{k.created_by}\t{_when(k.revoked_at)}"
                    f"\t{_when(k.last_used_at)}"
                )
            return 0
        key_id = _key_id(args.key_id)
        if await apikeys.revoke(conn, key_id):
            print(f"key {key_id} revoked")
            return 0
        print(f"no key {key_id}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
