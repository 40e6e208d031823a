"""Rebalancing: a second and a third instance of each consuming service join mid-run, then
one instance of each is killed; partitions move, and two escalators at once never submit
one URL twice (the simulator counts submissions per client reference)."""

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
    wait_ready,
)
from tests.faults.invariants import assert_invariants
from tests.infra import Infra

pytestmark = pytest.mark.faults


async def test_instances_join_and_one_is_killed(
    infra: Infra, fault_dir: Path, fault_reports: int
) -> None:
    async with open_run("rebalancing", fault_reports, infra, fault_dir) as run:
        load, task = start_load(
            run, valid_messages(run, fault_reports), load_duration(fault_reports)
        )
        for share in (0.2, 0.4):
            await load.reached(share)
            names = [run.stack.add_instance(service) for service in CONSUMERS]
            run.note(f"join {', '.join(names)}")
            await asyncio.gather(*(wait_ready(run, name) for name in names))
        await load.reached(0.6)
        for service in CONSUMERS:
            await stop_process(run, f"{service}-2", signal.SIGKILL, restart=False)
        await task
        await assert_invariants(run)
