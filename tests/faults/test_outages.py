"""Outages: the network path to the broker is cut for 30 s (every connection dropped, new
ones refused, through a proxy the broker advertises), and PostgreSQL is stopped and started
again mid-run; every service recovers by itself (none exits, none is restarted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.harness import load_duration, open_run, start_load, valid_messages
from tests.faults.invariants import assert_invariants
from tests.infra import Infra

pytestmark = pytest.mark.faults

BROKER_CUT_S = 30.0
DATABASE_DOWN_S = 10.0


async def test_broker_cut_and_database_restart(
    infra: Infra, fault_dir: Path, fault_reports: int
) -> None:
    async with open_run(
        "outages", fault_reports, infra, fault_dir, proxied=True, own_postgres=True
    ) as run:
        assert run.proxy is not None
        assert run.postgres is not None
        load, task = start_load(
            run, valid_messages(run, fault_reports), load_duration(fault_reports)
        )
        await load.reached(0.25)
        run.proxy.cut()
        run.note(f"cut the broker's network path for {BROKER_CUT_S:.0f}s")
        await asyncio.sleep(BROKER_CUT_S)
        run.proxy.restore()
        run.note(f"broker path restored (refused {run.proxy.proxy.refused} connections)")
        await load.reached(0.6)
        await asyncio.to_thread(run.postgres.stop)
        run.note(f"postgres stopped for {DATABASE_DOWN_S:.0f}s")
        await asyncio.sleep(DATABASE_DOWN_S)
        await asyncio.to_thread(run.postgres.start)
        run.note("postgres started")
        await task
        await assert_invariants(run)
