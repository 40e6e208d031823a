"""Crashes: every consuming service is killed with SIGKILL three times after 20% of the
run, and restarted; nothing is lost, duplicated or sent twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.faults.harness import (
    CONSUMERS,
    load_duration,
    open_run,
    start_load,
    stop_process,
    valid_messages,
)
from tests.faults.invariants import assert_invariants
from tests.infra import Infra

pytestmark = pytest.mark.faults

ROUNDS = (0.2, 0.45, 0.7)


async def test_sigkill_each_service_three_times(
    infra: Infra, fault_dir: Path, fault_reports: int
) -> None:
    async with open_run("crashes", fault_reports, infra, fault_dir) as run:
        load, task = start_load(
            run, valid_messages(run, fault_reports), load_duration(fault_reports)
        )
        for share in ROUNDS:
            await load.reached(share)
            for service in CONSUMERS:
                await stop_process(run, service, signal.SIGKILL)
                await asyncio.sleep(0.5)
        await task
        await assert_invariants(run)
