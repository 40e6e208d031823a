"""`helpline dev` run as `make dev` runs it, for tests that drive the whole local system:
a process group of its own, its output kept line by line, its `dev key:` awaited, and a
Ctrl-C (SIGINT to the group) at the end, then SIGKILL if it does not stop in time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

KEY_LINE = re.compile(r"^dev key: (hk_\S+)$")


@dataclass
class DevProcess:
    proc: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)  # every line printed so far
    key: str = ""  # the dev key it printed


@contextlib.asynccontextmanager
async def dev_process(
    env: dict[str, str], *, start_timeout_s: float = 180
) -> AsyncIterator[DevProcess]:
    """`helpline dev` with `env`, yielded once it has printed its dev key."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "helpline_cli.main",
        "dev",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
    )
    running = DevProcess(proc)
    key_seen = asyncio.get_running_loop().create_future()

    async def drain() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            running.output.append(line)
            if (found := KEY_LINE.match(line)) and not key_seen.done():
                key_seen.set_result(found.group(1))
        if not key_seen.done():
            key_seen.set_exception(AssertionError("helpline dev ended before its key"))

    reader = asyncio.create_task(drain())
    try:
        running.key = await asyncio.wait_for(key_seen, start_timeout_s)
        yield running
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 90)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        await asyncio.wait_for(reader, 10)
