"""Platform faults: one platform answers slowly, with 429 and `Retry-After`, 503s, lost
replies (stored, the answer never arrives) and late stores (stored after the caller gave
up); the other platforms keep flowing, and no notice is submitted twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from tests.faults.harness import load_duration, open_run, start_load, valid_messages
from tests.faults.invariants import TERMINAL, assert_invariants
from tests.faults.platform_proxy import PlatformFaults
from tests.faults.progress import Check
from tests.infra import Infra

pytestmark = pytest.mark.faults

FAULTY = "tiktok"


async def _open_by_platform(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch(
        """SELECT platform = $1 AS faulty, count(*) FILTER (WHERE state <> ALL($2::text[])) AS open
           FROM escalator.escalations GROUP BY 1""",
        FAULTY,
        list(TERMINAL),
    )
    return {("faulty" if r["faulty"] else "others"): r["open"] for r in rows}


async def test_one_faulty_platform_does_not_hold_up_the_others(
    infra: Infra, fault_dir: Path, fault_reports: int
) -> None:
    faults = PlatformFaults(
        FAULTY,
        latency_s=0.3,
        rate_limit_rate=0.1,
        unavailable_rate=0.1,
        lost_reply_rate=0.05,
        late_store_rate=0.05,
    )
    async with open_run(
        "platform-faults", fault_reports, infra, fault_dir, platform_faults=faults
    ) as run:
        assert run.platforms is not None
        load, task = start_load(
            run, valid_messages(run, fault_reports), load_duration(fault_reports)
        )
        await load.reached(0.1)
        run.platforms.enabled = True
        run.note(f"faulty platform {FAULTY}: {faults}")
        await task
        db = await asyncpg.connect(run.stack.settings.database_url)
        try:
            deadline = time.monotonic() + 120 + fault_reports / 20
            seen = await _open_by_platform(db)
            while seen.get("others", 0) and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                seen = await _open_by_platform(db)
            cases = await db.fetchval(
                "SELECT count(*) FROM intake.reports WHERE source = $1", run.source
            )
        finally:
            await db.close()
        flowing = Check(
            "the other platforms keep flowing",
            seen.get("others", 0) == 0 and cases == len(run.reports),
            f"while {FAULTY} was faulty: open escalations {seen}, cases {cases}",
        )
        run.note(f"{FAULTY} faults injected: {faults.counts}")
        run.platforms.enabled = False
        run.note(f"{FAULTY} healthy again")
        injected = Check(
            "every fault was injected",
            all(faults.counts.get(k, 0) > 0 for k in ("429", "503", "lost_reply", "late_store")),
            str(faults.counts),
        )
        await assert_invariants(run, extra=[flowing, injected])
