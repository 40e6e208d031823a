"""The subscriber example (examples/subscribe_confluent.py) against the real pipeline: after
an end-to-end run of a few reports its own tally, built from the outcome events it reads
with confluent-kafka, equals `/v1/totals`; its latest snapshot equals them too; and when
every event is delivered again it counts none of them twice."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpline_cli.stack import Stack
from helpline_shared.events import MetricsSnapshotV1
from helpline_shared.topics import METRICS_SNAPSHOTS
from tests.helpers import every_scope_key, keyed_client, read_topic
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import _stack, wait_until

pytestmark = pytest.mark.e2e

IDLE = ("--idle-s", "2")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples/subscribe_confluent.py"
RUN = random.Random().randrange(10**9)
SHARED = f"https://www.tiktok.com/@shared{RUN}/video/7{RUN:018d}"
URLS = [
    [f"https://www.tiktok.com/@a{RUN}/video/71{RUN:017d}", SHARED],
    [SHARED],  # the same content from a second case: one escalation, two URL reports
    [f"https://www.instagram.com/p/B{RUN}/"],
    [f"https://www.youtube.com/watch?v=y{RUN}", f"https://www.tiktok.com/@b{RUN}"],
    [f"https://www.tiktok.com/@c{RUN}/video/72{RUN:017d}"],
    [f"https://x.com/d{RUN}/status/1{RUN:018d}"],
]


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        async for s in _stack(infra, servers, tmp_dir / "subscriber"):
            yield s


async def api_totals(stack: Stack) -> dict[str, Any]:
    key = await every_scope_key(stack.settings.database_url or "")
    async with keyed_client(key=key) as client:
        return dict((await client.get(f"{stack.url('metrics')}/v1/totals")).json())


async def run_example(stack: Stack, *args: str) -> dict[str, Any]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLE), stack.settings.kafka_bootstrap_servers, *args],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return dict(json.loads(done.stdout))


async def test_the_example_tally_equals_the_totals(stack: Stack, tmp_path: Path) -> None:
    key = await every_scope_key(stack.settings.database_url or "", source="subscriber-e2e")
    async with keyed_client(stack.url("intake"), key) as client:
        for n, urls in enumerate(URLS):
            r = await client.post(
                "/v1/reports",
                json={
                    "schema_version": 1,
                    "source": "subscriber-e2e",
                    "report_id": f"sub-{RUN}-{n}",
                    "reporter": {"name": f"Reporter {n}", "email": f"r{n}@school.example"},
                    "description": "Pupils are bullying a teacher in these videos.",
                    "urls": urls,
                },
            )
            assert r.status_code == 202, r.text

    reports = sum(len(u) for u in URLS)

    async def settled() -> tuple[bool, Any]:
        t = await api_totals(stack)
        states = t["url_reports"]["by_state"]
        return (
            t["cases"] == len(URLS)
            and t["url_reports"]["total"] == reports
            and not states.get("queued")
            and not states.get("submitted"),
            t,
        )

    await wait_until(settled, 45, "every URL report decided, failed or manual")
    totals = await api_totals(stack)
    db = await asyncpg.connect(stack.settings.database_url)
    try:
        counted = await db.fetchval("SELECT count(*) FROM metrics.inbox")
    finally:
        await db.close()

    async def snapshot_of_everything() -> tuple[bool, Any]:
        records = await read_topic(stack.settings.kafka_bootstrap_servers, METRICS_SNAPSHOTS.name)
        sequences = [MetricsSnapshotV1.model_validate_json(r.value).sequence for r in records]
        return counted in sequences, sequences[-3:]

    await wait_until(snapshot_of_everything, 15, "a snapshot of the final totals")

    state = tmp_path / "tally.json"
    tally = await run_example(stack, "--group", "external-e2e", "--state", str(state), *IDLE)

    content = tally["content"]
    assert content["total"] == totals["escalations"]["total"]
    assert content["by_state"] == totals["escalations"]["by_state"]
    assert content["by_platform"] == totals["escalations"]["by_platform"]
    assert content["decisions"] == totals["decisions"]
    assert content["takedowns"] == totals["takedowns"]
    assert content["takedown_rate"] == totals["takedown_rate"]
    assert content["urls_escalated"] == totals["urls_escalated"]
    assert tally["url_reports"]["by_state"] == totals["url_reports"]["by_state"]
    assert tally["url_reports"]["takedowns"] == totals["url_reports"]["takedowns"]
    assert sum(tally["url_reports"]["by_state"].values()) == reports
    assert content["total"] == reports - 1  # the shared content is one escalation
    assert tally["duplicates_ignored"] == 0

    snapshot = tally["latest_snapshot"]
    assert snapshot["sequence"] == counted
    assert (snapshot["cases"], snapshot["urls"]) == (totals["cases"], totals["urls"])
    assert snapshot["urls_escalated"] == totals["urls_escalated"]
    assert snapshot["decisions_by_type"] == totals["decisions"]
    assert (snapshot["takedowns"], snapshot["takedown_rate"]) == (
        totals["takedowns"],
        totals["takedown_rate"],
    )
    assert {p: f["decisions"] for p, f in snapshot["platforms"].items() if f["decisions"]} == {
        p: f["decisions"] for p, f in content["per_platform"].items()
    }
    assert {p: f["takedowns"] for p, f in snapshot["platforms"].items() if f["decisions"]} == {
        p: f["takedowns"] for p, f in content["per_platform"].items()
    }

    # The same group again: offsets were committed, nothing new, the same tally.
    again = await run_example(stack, "--group", "external-e2e", "--state", str(state), *IDLE)
    assert again == tally
    # A new group is handed every event again (as after a lost commit): none counts twice.
    redelivered = await run_example(
        stack, "--group", "external-e2e-replay", "--state", str(state), *IDLE
    )
    assert redelivered["duplicates_ignored"] == tally["events"]
    assert redelivered["content"] == content
    assert redelivered["url_reports"] == tally["url_reports"]
