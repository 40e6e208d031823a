"""`helpline reporter erase <case id or email>`: remove a reporter's personal data.

The case may also be named by its short reference (`HL-7K3M-Q2XD`, as a reporter quotes it
on the phone): it is erased as by its case id.

Prints what it erased as counts and case ids, never the personal data. The erasure queues
a null reporter per erased case on intake's outbox in its own transaction (see `erasure`);
the command then relays intake's outbox to Kafka itself, so casework drops its copy now,
and when Kafka cannot be reached within `RELAY_TIMEOUT_S` says so and leaves the events
queued for intake's relay (the erasure itself stands either way). Exit codes: 0 when
the data is gone (erased now, or nothing left to erase: "nothing to erase", so running it
again is safe), 1 for a case id (or reference) no case has, 2 for bad arguments, a
missing database URL or a refused confirmation. Without `--yes` it asks first, and
refuses when stdin is not a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from helpline_intake import erasure
from helpline_intake.usecase import intake_outbox
from helpline_shared.db import Database
from helpline_shared.kafka import build_broker
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_shared.topics import CASE_REPORTERS

RELAY_TIMEOUT_S = 15.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reporter = sub.add_parser("reporter", help="a reporter's personal data")
    actions = reporter.add_subparsers(dest="action", required=True)
    erase = actions.add_parser(
        "erase", help="erase a reporter's personal data; the anonymised cases still count"
    )
    erase.add_argument(
        "target",
        metavar="CASE_ID_OR_EMAIL",
        help="a case id, the case's reference (HL-XXXX-XXXX) or the reporter's email",
    )
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
    reference = None
    try:
        target = erasure.Target.parse(args.target)
    except ValueError as exc:
        if erasure.reference_prefix(args.target) is None:
            print(f"helpline reporter erase: {exc} or a case reference (HL-...)", file=sys.stderr)
            return 2
        reference = args.target.strip()
    by = args.by or getpass.getuser()
    db = Database(settings.database_url, max_size=2)
    await db.open()
    if reference is not None:
        async with db.pool.acquire() as conn:
            case_id = await erasure.case_by_reference(conn, reference)
        if case_id is None:
            await db.close()
            print(f"no case has the reference {reference}", file=sys.stderr)
            return 1
        target = erasure.Target("case_id", case_id=case_id)
    broker = build_broker(settings, "intake")
    outbox = intake_outbox(db, broker)
    try:
        async with db.pool.acquire() as conn:
            try:
                found = await erasure.find(conn, target)
                if not found.nothing and not args.yes and not _confirm(found):
                    print("nothing erased", file=sys.stderr)
                    return 2
                done = await erasure.erase(conn, target, by=by, reason=args.reason, outbox=outbox)
            except erasure.UnknownCaseError:
                print(f"no case {target.case_id}", file=sys.stderr)
                return 1
            earlier = target.email is not None and await erasure.was_erased(conn, target.email)
        relayed = bool(done.case_ids) and await _relay(outbox, broker, done.case_ids, db)
    finally:
        await db.close()
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
    told = "published" if relayed else "queued on intake's outbox (not relayed yet)"
    print(f"  helpline.cases.reporters: null reporter {told} for {len(done.case_ids)} case(s)")
    for case_id in done.case_ids:
        print(f"  case {case_id}")
    return 0


async def _relay(
    outbox: Outbox, broker: KafkaBroker, case_ids: list[uuid.UUID], db: Database
) -> bool:
    """Publish intake's queued events now; False when Kafka could not be reached in time or
    another relay holds intake's outbox, so the null reporters are still queued (intake's
    relay publishes them)."""
    try:
        async with asyncio.timeout(RELAY_TIMEOUT_S):
            await broker.connect()
            await outbox.drain()
    except (TimeoutError, OSError, KafkaError):
        return False
    finally:
        await broker.stop()
    queued = await db.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE service = 'intake' AND topic = $1"
        " AND key = ANY($2::bytea[])",
        CASE_REPORTERS.name,
        [str(c).encode() for c in case_ids],
    )
    return not queued
