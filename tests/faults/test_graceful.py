"""Graceful stops: every consuming service gets SIGTERM three times after 20% of the run
and is restarted; each exits 0. In one round the platforms answer more slowly than the
graceful timeout, so the escalator's handler is still running when the timeout expires."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.faults.harness import (
    CONSUMERS,
    load_duration,
    open_run,
    simulator,
    start_load,
    stop_process,
    valid_messages,
)
from tests.faults.invariants import assert_invariants
from tests.infra import Infra

pytestmark = pytest.mark.faults

ROUNDS = (0.2, 0.45, 0.7)
GRACEFUL_S = 2.0
SLOW_MS = 2500  # above the graceful timeout, below the platform timeout (3 s)


async def test_sigterm_each_service_three_times(
    infra: Infra, fault_dir: Path, fault_reports: int
) -> None:
    env = {"HELPLINE_GRACEFUL_TIMEOUT_S": str(GRACEFUL_S)}
    async with open_run("graceful", fault_reports, infra, fault_dir, env=env) as run:
        messages = valid_messages(run, fault_reports)
        load, task = start_load(run, messages, load_duration(fault_reports))
        for n, share in enumerate(ROUNDS):
            await load.reached(share)
            slow = n == 1
            if slow:  # calls in flight outlive the graceful timeout
                await simulator(run, "/_sim/config", {"latency_ms": SLOW_MS})
                run.note(f"simulator latency {SLOW_MS} ms")
                await asyncio.sleep(1.0)
            for service in CONSUMERS:
                code = await stop_process(run, service, signal.SIGTERM)
                if code != 0:
                    run.problems.append(f"{service} exited {code} on SIGTERM")
                await asyncio.sleep(0.5)
            if slow:
                await simulator(run, "/_sim/config", {"latency_ms": 5})
                run.note("simulator latency 5 ms")
        await task
        await assert_invariants(run)
