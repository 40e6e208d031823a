"""Starting the whole system as separate processes, as dev mode, tests and the bench need.

`Stack` brings up (unless configured) the broker and the database, creates the topics,
migrates, then starts the simulator and the six services with `helpline run`, each in its
own process, and waits until every one is ready. A broker configured at a free port of
this machine is the embedded one, started there. Unless HELPLINE_PLATFORM_BASE_URL is set,
the services reach the platforms and the hotline at the simulator, on whichever port it
got. `stop()` sends SIGTERM and waits for a graceful exit before killing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from helpline_cli.infra import (
    create_database,
    free_port,
    port_is_free,
    start_embedded_postgres,
    start_tansu,
)
from helpline_shared.db import migrate
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings

SERVICES = ("simulator", "intake", "triage", "escalator", "metrics", "casework", "notify")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def _embedded_broker_at(servers: str) -> tuple[str, str] | None:
    """(host, port) of `servers` when it names one address on this machine where nothing
    listens: there the embedded broker is started (asking for a broker on a free local port
    is how to run it beside another that holds 9092); else None."""
    if "," in servers or ":" not in servers:
        return None
    host, port = servers.strip().rsplit(":", 1)
    if host not in LOOPBACK_HOSTS or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return (host, port) if port_is_free(host, int(port)) else None


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    broker_proc: subprocess.Popen[bytes] | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    specs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    # Processes beside the system (a mail catcher): stopped with it, never counted as it.
    aux: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    scratch: list[Path] = field(default_factory=list)  # directories removed at stop

    def port(self, service: str) -> int:
        if service in self.ports:
            return self.ports[service]
        return int(getattr(self.settings, f"{service}_port"))

    def url(self, service: str) -> str:
        return f"http://{self.settings.http_host}:{self.port(service)}"

    @classmethod
    async def prepare(
        cls,
        settings: Settings,
        *,
        log_dir: Path,
        database_name: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Stack:
        """Start the broker and database unless configured; create topics; migrate."""
        log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (startup, once)
        env = {**os.environ, **(extra_env or {})}
        broker_proc = None
        configured = env.get("HELPLINE_KAFKA_BOOTSTRAP_SERVERS")
        embedded = _embedded_broker_at(configured or settings.kafka_bootstrap_servers)
        if configured is None or embedded is not None:
            host, port = embedded or settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
            if not port_is_free(host, int(port)):
                raise RuntimeError(
                    f"{host}:{port} is taken; stop what runs there, or set "
                    "HELPLINE_KAFKA_BOOTSTRAP_SERVERS to use that broker (or to a free local "
                    "port, such as 127.0.0.1:19092, for the embedded one)"
                )
            broker_proc = start_tansu(int(port), host, log_dir / "broker.log")
            env["HELPLINE_KAFKA_BOOTSTRAP_SERVERS"] = f"{host}:{port}"
        try:
            database_url = env.get("HELPLINE_DATABASE_URL")
            if not database_url:
                database_url = start_embedded_postgres(settings.data_dir / "postgres")
            if database_name:
                database_url = await create_database(database_url, database_name)
            env["HELPLINE_DATABASE_URL"] = database_url
            settings = settings.model_copy(
                update={
                    "kafka_bootstrap_servers": env["HELPLINE_KAFKA_BOOTSTRAP_SERVERS"],
                    "database_url": database_url,
                }
            )
            await create_topics(settings)
            await migrate(database_url)
        except BaseException:
            if broker_proc is not None:  # do not leave our broker running behind us
                broker_proc.terminate()
                broker_proc.wait(10)
            raise
        return cls(settings, env, log_dir, broker_proc)

    async def start_services(
        self, services: tuple[str, ...] = SERVICES, *, replicas: dict[str, int] | None = None
    ) -> None:
        """Start each service; `replicas` runs extra processes of a service (same consumer
        group, own health port), named `<service>-2`, `<service>-3`, ..."""
        names: list[str] = []
        for service in services:
            variable = f"HELPLINE_{service.upper()}_PORT"
            env = self.env
            if not port_is_free(self.settings.http_host, self.port(service)):
                if variable in self.env:
                    raise RuntimeError(
                        f"port {self.port(service)} for {service} is taken; set {variable}"
                    )
                # Its port was not chosen: any free one does (see `url`).
                self.ports[service] = free_port(self.settings.http_host)
                env = {**self.env, variable: str(self.ports[service])}
            if service == "simulator" and "HELPLINE_PLATFORM_BASE_URL" not in self.env:
                # The platforms (and the hotline) are this simulator wherever it listens,
                # its port chosen or found free, unless the platforms were configured.
                self.env["HELPLINE_PLATFORM_BASE_URL"] = self.url("simulator")
                self.settings = self.settings.model_copy(
                    update={"platform_base_url": self.url("simulator")}
                )
            self._spawn(service, service, env)
            names.append(service)
            for n in range(2, (replicas or {}).get(service, 1) + 1):
                name = f"{service}-{n}"
                self.ports[name] = free_port(self.settings.http_host)
                env = {**self.env, f"HELPLINE_{service.upper()}_PORT": str(self.ports[name])}
                self._spawn(name, service, env)
                names.append(name)
        await self.wait_ready(tuple(names))

    def add_instance(self, service: str) -> str:
        """Start one more process of `service` (same consumer group, own health port);
        returns its name, `<service>-<n>`. Wait for it with `wait_ready`."""
        n = 2
        while f"{service}-{n}" in self.specs:
            n += 1
        name = f"{service}-{n}"
        self.ports[name] = free_port(self.settings.http_host)
        env = {**self.env, f"HELPLINE_{service.upper()}_PORT": str(self.ports[name])}
        self._spawn(name, service, env)
        return name

    def signal_service(self, name: str, sig: int, timeout_s: float = 60.0) -> int:
        """Send `sig` to one process and wait for it to exit (SIGKILL after `timeout_s`);
        returns its exit code. `restart_service` starts it again as it was."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def restart_service(self, name: str) -> None:
        """Start a stopped process again with its service, environment and port."""
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        service, env = self.specs[name]
        self._spawn(name, service, env)

    def _spawn(self, name: str, service: str, env: dict[str, str]) -> None:
        self.specs[name] = (service, env)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "helpline_cli.main", "run", service],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, services: tuple[str, ...], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            for service in services:
                while True:
                    proc = self.procs[service]
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{service} exited with {proc.returncode}; see "
                            f"{self.log_dir / (service + '.log')}"
                        )
                    try:
                        r = await client.get(f"{self.url(service)}/health/ready")
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{service} not ready after {timeout_s:.0f}s")
                    await asyncio.sleep(0.2)

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def stop_service(self, service: str, timeout_s: float = 30.0) -> int | None:
        if service not in self.procs:
            return None
        code = self.signal_service(service, signal.SIGTERM, timeout_s)
        del self.procs[service]
        return code

    def stop(self, timeout_s: float = 30.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for service in list(self.procs):
            self.stop_service(service, timeout_s)
        for aux in self.aux.values():
            aux.terminate()
            try:
                aux.wait(10)
            except subprocess.TimeoutExpired:
                aux.kill()
        self.aux.clear()
        for directory in self.scratch:
            shutil.rmtree(directory, ignore_errors=True)
        if self.broker_proc is not None:
            self.broker_proc.terminate()
            try:
                self.broker_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.broker_proc.kill()
            self.broker_proc = None
