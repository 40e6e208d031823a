"""`helpline dev`: the whole system on this machine, embedded defaults, one Ctrl-C to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from urllib.parse import urlsplit, urlunsplit

from helpline_cli.stack import Stack
from helpline_shared.settings import Settings


def _masked(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def run_dev(settings: Settings) -> int:
    log_dir = settings.data_dir / "logs"
    print("helpline dev: starting broker, database, topics, migrations ...", flush=True)
    stack = await Stack.prepare(settings, log_dir=log_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stack.start_services()
        s = stack.settings
        print(
            "\nhelpline dev is up:\n"
            f"  broker      {s.kafka_bootstrap_servers}\n"
            f"  database    {_masked(s.database_url or '')}\n"
            f"  intake      {stack.url('intake')}  (POST /v1/reports, web form at /report)\n"
            f"  triage      {stack.url('triage')}\n"
            f"  escalator   {stack.url('escalator')}\n"
            f"  metrics     {stack.url('metrics')}  (GET /v1/totals, GET /metrics)\n"
            f"  simulator   {stack.url('simulator')}  (GET /_sim/stats)\n"
            f"  logs        {log_dir}/\n"
            "Publish a report: helpline publish examples/report.json\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
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
