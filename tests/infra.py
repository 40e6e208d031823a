"""Real infrastructure for the tests: the configured broker and database, else containers
when a Docker engine answers, else the embedded Tansu broker and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpline_cli.infra import free_port, start_embedded_postgres, start_tansu


@dataclass(frozen=True)
class Infra:
    bootstrap_servers: str
    database_url: str  # a server URL; tests create their own databases on it
    kind: str


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def tansu(tmp: Path) -> Iterator[str]:
    """A fresh embedded broker on a free port, stopped afterwards."""
    port = free_port()
    proc = start_tansu(port, log_path=tmp / f"tansu-{port}.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def dedicated_broker(infra: Infra, tmp: Path) -> Iterator[str]:
    """A broker no other test module publishes to: a fresh Tansu when the session's broker
    is the embedded one, else the session's broker (tests then assume it is dedicated)."""
    if not infra.kind.startswith("broker=tansu"):
        yield infra.bootstrap_servers
        return
    with tansu(tmp) as servers:
        yield servers


@contextlib.contextmanager
def _broker(tmp: Path) -> Iterator[tuple[str, str]]:
    configured = os.environ.get("HELPLINE_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured, "configured"
        return
    if docker_available():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server(), "testcontainers"
        return
    with tansu(tmp) as servers:
        yield servers, "tansu"


@contextlib.contextmanager
def _database(tmp: Path) -> Iterator[tuple[str, str]]:
    configured = os.environ.get("HELPLINE_DATABASE_URL")
    if configured:
        yield configured, "configured"
        return
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as pg:
            yield pg.get_connection_url(), "testcontainers"
        return
    yield start_embedded_postgres(tmp / "postgres"), "embedded"


@contextlib.contextmanager
def infrastructure(tmp: Path) -> Iterator[Infra]:
    with _broker(tmp) as (servers, broker_kind), _database(tmp) as (url, db_kind):
        yield Infra(servers, url, f"broker={broker_kind} database={db_kind}")
