"""Entry point of the `helpline` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from helpline_cli import dlq, erase, keys, mail_cli, metrics_cli, rules_cli
from helpline_cli.services import FACTORIES, settings_problem
from helpline_shared.logging import configure_logging
from helpline_shared.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="helpline", description="Escalation platform for online-safety helplines."
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run the whole system locally (embedded broker and database)")
    run = sub.add_parser("run", help="run one service in the foreground")
    run.add_argument("service", choices=sorted(FACTORIES))
    topics = sub.add_parser("topics", help="manage Kafka topics")
    topics.add_argument("action", choices=["create", "list", "check"])
    topics.add_argument(
        "--strict", action="store_true", help="check: settings not reported count as drift"
    )
    db = sub.add_parser("db", help="manage the database")
    db.add_argument("action", choices=["migrate"])
    pub = sub.add_parser("publish", help="publish reports onto helpline.reports.submitted")
    pub.add_argument(
        "file", nargs="?", help="JSON file (object or list); '-' or none: JSON lines on stdin"
    )
    pub.add_argument("--topic", default=None, help="override the topic")
    bench = sub.add_parser("bench", help="measure the pipeline against a raw aiokafka relay")
    bench.add_argument("-n", "--reports", type=int, default=3000)
    bench.add_argument("--urls-per-report", type=int, default=2)
    bench.add_argument("--escalators", type=int, default=1, help="escalator processes")
    bench.add_argument(
        "--rate",
        default=None,
        metavar="R[,R...]",
        help="offered load: publish R reports/s on schedule, each rate on a fresh stack",
    )
    bench.add_argument(
        "--duration", type=float, default=20.0, help="offered load: seconds per rate"
    )
    bench.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="offered load: py-spy samples every service during each rate; stacks into DIR",
    )
    bench.add_argument(
        "--max-rate",
        action="store_true",
        help="offered load: the highest rate whose p99 stays under one second (from --rate R)",
    )
    bench.add_argument(
        "--backlog",
        type=int,
        default=None,
        metavar="N",
        help="publish N reports with the services stopped, start them, and print each "
        "service's peak RSS and the drain rate",
    )
    bench.add_argument(
        "--year",
        action="store_true",
        help="the simulated 2024 year end to end, simulator latency at 0 and at its default",
    )
    bench.add_argument(
        "--scenario",
        choices=["pipeline", "isolation"],
        default="pipeline",
        help="isolation: the other platforms' throughput with one platform slow and 429ing",
    )
    bench.add_argument("--faulty-platform", default="tiktok", help="isolation: which one")
    bench.add_argument(
        "--backlog-platform-escalations",
        type=int,
        default=0,
        metavar="N",
        help="isolation: then queue N escalations on the faulty platform; escalator RSS",
    )
    bench.add_argument(
        "--rounds", type=int, default=2, help="isolation: faulty passes, each between clean ones"
    )
    sim = sub.add_parser(
        "simulate", help="a generated year through the whole pipeline, its annual report"
    )
    sim.add_argument("--year", type=int, default=2024)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--scale", type=float, default=1.0, help="share of the published counts")
    sim.add_argument("--latency-ms", type=float, default=None, help="simulator latency")
    intake = sub.add_parser("intake", help="intake's data")
    intake_sub = intake.add_subparsers(dest="action", required=True)
    purge = intake_sub.add_parser(
        "purge", help="clear refused messages' bytes kept past the retention period"
    )
    purge.add_argument(
        "--older-than-days",
        type=int,
        default=None,
        help="retention in days (default: HELPLINE_INTAKE_ORIGINAL_RETENTION_DAYS)",
    )
    contracts = sub.add_parser(
        "contracts", help="write (or --check) the JSON Schemas and AsyncAPI documents"
    )
    contracts.add_argument("--check", action="store_true", help="fail if any file differs")
    contracts.add_argument("--root", default=".", help="repository root")
    url = sub.add_parser("url", help="what triage understands of URLs")
    explain = url.add_subparsers(dest="action", required=True).add_parser(
        "explain", help="platform, kind and canonical form of each URL, one JSON line each"
    )
    explain.add_argument("urls", nargs="+", metavar="URL", help="a URL; '-': one per stdin line")
    explain.add_argument(
        "--from-text", action="store_true", help="the arguments are free text to find URLs in"
    )
    rules_cli.add_parser(sub)
    dlq.add_parser(sub)
    metrics_cli.add_parser(sub)
    erase.add_parser(sub)
    keys.add_parser(sub)
    mail_cli.add_parser(sub)
    return p


# Commands whose module parses its own arguments and runs them.
_RUNNERS: dict[str, Callable[[argparse.Namespace, Settings], Awaitable[int]]] = {
    "reporter": erase.run,
    "keys": keys.run,
    "mail": mail_cli.run,
}


async def _bench(args: argparse.Namespace, settings: Settings) -> int:
    """`helpline bench`: a scenario, offered rates, or the pipeline against the relay."""
    if args.scenario == "isolation":
        from helpline_cli.bench.isolation import run_isolation
        from helpline_cli.bench.passes import Faults

        return await run_isolation(
            settings,
            reports_n=args.reports,
            urls_per_report=args.urls_per_report,
            faulty=args.faulty_platform,
            faults=Faults(),
            backlog=args.backlog_platform_escalations,
            rounds=args.rounds,
        )
    if args.backlog is not None:
        from helpline_cli.bench.drain import run_backlog

        return await run_backlog(
            settings, reports=args.backlog, urls_per_report=args.urls_per_report
        )
    if args.year:
        from helpline_cli.bench.year_run import run_year_bench

        return await run_year_bench(settings)
    if args.rate or args.max_rate:
        from helpline_cli.bench.rates import run_max_rate, run_rates

        if args.max_rate:  # --rate R with it: the first rate tried
            start = float(args.rate.split(",")[0]) if args.rate else 200.0
            return await run_max_rate(settings, args.duration, args.urls_per_report, start)
        rates = [float(r) for r in args.rate.split(",")]
        from pathlib import Path

        profile = Path(args.profile) if args.profile else None
        return await run_rates(settings, rates, args.duration, args.urls_per_report, profile)
    from helpline_cli.bench import run_bench

    return await run_bench(
        settings,
        reports=args.reports,
        urls_per_report=args.urls_per_report,
        escalators=args.escalators,
    )


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "run":
        from helpline_cli.services import run_service

        return await run_service(args.service, settings)
    if args.command == "dev":
        from helpline_cli.dev import run_dev

        try:
            return await run_dev(settings)
        except (RuntimeError, TimeoutError) as exc:
            print(f"helpline dev: {exc}", file=sys.stderr)
            return 1
    if args.command == "topics" and args.action == "check":
        from helpline_cli.topics_cli import check

        return await check(settings, strict=args.strict)
    if args.command == "dlq":
        return await dlq.run(args, settings)
    if args.command == "topics":
        from helpline_shared.kafka import create_topics
        from helpline_shared.topics import ALL_TOPICS

        if args.action == "create":
            created = await create_topics(settings)
            print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
        else:
            for t in ALL_TOPICS:
                partitions = t.partitions or settings.kafka_topic_partitions
                print(
                    f"{t.name}\t{'external' if t.external else 'internal'}"
                    f"\tkey={t.key}\tpartitions={partitions}"
                    f"\tproducers={','.join(t.producers)}\tconsumers={','.join(t.consumers)}"
                )
        return 0
    if args.command == "db":
        from helpline_shared.db import migrate

        if not settings.database_url:
            print("set HELPLINE_DATABASE_URL", file=sys.stderr)
            return 2
        applied = await migrate(settings.database_url)
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or '-'}")
        return 0
    if args.command == "publish":
        from helpline_cli.publish import DEFAULT_TOPIC, publish, read_reports

        n = await publish(settings, read_reports(args.file), args.topic or DEFAULT_TOPIC)
        print(f"published {n} report(s) to {args.topic or DEFAULT_TOPIC}")
        return 0
    if args.command == "simulate":
        from helpline_cli.simulate import run_simulate

        return await run_simulate(
            settings,
            year=args.year,
            seed=args.seed,
            scale=args.scale,
            latency_ms=args.latency_ms,
        )
    if args.command == "bench":
        return await _bench(args, settings)
    if args.command == "intake":
        from helpline_cli.purge import purge_originals

        return await purge_originals(settings, args.older_than_days)
    if args.command == "contracts":
        from pathlib import Path

        from helpline_cli.contracts import write_or_check

        differing = write_or_check(Path(args.root), check=args.check)
        verb = "differ from the code" if args.check else "written"
        print(f"{len(differing)} contract file(s) {verb}: {', '.join(differing) or '-'}")
        return 1 if args.check and differing else 0
    if args.command == "url":
        from helpline_cli.url_explain import explain

        return explain(args.urls, from_text=args.from_text)
    if args.command == "rules":
        return rules_cli.run(args)
    if args.command in _RUNNERS:
        return await _RUNNERS[args.command](args, settings)
    if args.command in ("report", "metrics"):
        return await metrics_cli.run(args, settings)
    return 2


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]); asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"helpline: {settings_problem(exc)}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_json)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            code = runner.run(_dispatch(args, settings))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
