"""Poison floods. Mixed: malformed messages (bad JSON, invalid fields, headers that are not
UTF-8, 600 KB keys) among valid traffic on every consumed topic; valid reports keep
flowing and each bad message lands on its rejected or dead-letter topic once. Pure: a flood
that is all bad trips the dead-letter bound, which shows in readiness and `/metrics`, and
the service recovers once valid traffic follows."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from pathlib import Path

import httpx
import pytest

from helpline_shared.topics import (
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_OUTCOMES,
    REPORTS_SUBMITTED,
)
from tests.faults.harness import (
    Message,
    Run,
    load_duration,
    make_report,
    open_run,
    readiness,
    start_load,
    valid_messages,
)
from tests.faults.invariants import assert_invariants, settle
from tests.faults.progress import Check
from tests.infra import Infra

pytestmark = pytest.mark.faults

BAD_HEADER = [("x", b"\xff")]
HUGE_KEYS = 5  # 600 KB each


def _report(**changes: object) -> bytes:
    base = {
        "schema_version": 1,
        "source": "poison",
        "report_id": "p",
        "reporter": {"name": "A", "email": "a@b.example"},
        "description": "d",
        "urls": ["https://www.tiktok.com/@a/video/1"],
    }
    return json.dumps(base | changes).encode()


SUBMITTED_BAD: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not-json", b"not json at all"),
    ("truncated", b'{"schema_version": 1'),
    ("array", b"[1, 2, 3]"),
    ("version-2", json.dumps({"schema_version": 2, "source": "x", "report_id": "y"}).encode()),
    ("no-urls", _report(urls=[])),
    ("bad-email", _report(reporter={"name": "A", "email": "not-an-email"})),
    ("js-url", _report(urls=["javascript:alert(1)"])),
    ("extra-field", _report(surprise=True)),
    ("latin-1", '{"schema_version": 1, "s\u00e9": \xff}'.encode("latin-1")),
    ("year-10000", _report(submitted_at="9999-12-31T23:59:59-12:00")),
]


def malformed(run: Run, n: int, seed: int = 11) -> list[Message]:
    """`n` malformed messages: 80% on the submitted topic, the rest on internal topics."""
    rng = random.Random(seed)
    out: list[Message] = []
    for i in range(n):
        key = f"bad-{i}".encode()
        roll = rng.random()
        if roll < 0.8:
            if i < HUGE_KEYS:
                out.append(
                    Message(
                        REPORTS_SUBMITTED.name,
                        b"k" * 600_000,
                        b"not json",
                        kind="huge-key",
                        consumers=("intake",),
                    )
                )
            elif i % 10 == 0:  # a valid report, but a header that is not UTF-8
                report = make_report(f"{run.source}-hdr", i, rng)
                out.append(
                    Message(
                        REPORTS_SUBMITTED.name,
                        key,
                        json.dumps(report).encode(),
                        headers=BAD_HEADER,
                        kind="bad-header",
                        consumers=("intake",),
                    )
                )
            else:
                kind, value = SUBMITTED_BAD[i % len(SUBMITTED_BAD)]
                out.append(
                    Message(REPORTS_SUBMITTED.name, key, value, kind=kind, consumers=("intake",))
                )
            continue
        headers = BAD_HEADER if i % 2 else None
        kind = "bad-header+json" if headers else "bad-json"
        value = b"{not json" if i % 3 else json.dumps({"schema_version": 1}).encode()
        ukey = uuid.uuid4().bytes
        if roll < 0.87:
            out.append(Message(CASES_OPENED.name, ukey, value, headers, kind, ("triage",)))
        elif roll < 0.94:
            out.append(
                Message(CASES_TRIAGED.name, ukey, value, headers, kind, ("escalator", "metrics"))
            )
        else:
            out.append(Message(ESCALATION_OUTCOMES.name, ukey, value, headers, kind, ("metrics",)))
    return out


async def test_mixed_flood_valid_reports_keep_flowing(
    infra: Infra, fault_dir: Path, fault_reports: int
) -> None:
    async with open_run("poison-mixed", fault_reports, infra, fault_dir) as run:
        messages = valid_messages(run, fault_reports) + malformed(run, fault_reports)
        random.Random(3).shuffle(messages)
        run.note(f"flood: {run.size} malformed among {len(messages) - run.size} valid messages")
        _, task = start_load(run, messages, load_duration(fault_reports))
        await task
        await assert_invariants(run)


DLQ_WINDOW = 50


async def _dead_letter_lines(run: Run, name: str) -> tuple[float, list[str]]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        try:
            text = (await client.get(f"{run.stack.url(name)}/metrics")).text
        except httpx.HTTPError:
            return 0.0, []
    lines = [ln for ln in text.splitlines() if "dead_letter" in ln and not ln.startswith("#")]
    total = 0.0
    for ln in lines:
        if m := re.match(r'helpline_dead_letters_total\{service="triage"\} ([0-9.e+]+)', ln):
            total = float(m.group(1))
    return total, lines


async def test_pure_flood_trips_the_bound_and_recovers(
    infra: Infra, fault_dir: Path, fault_reports: int
) -> None:
    flood = max(4 * DLQ_WINDOW, fault_reports // 10)
    valid = max(60, fault_reports // 5)
    env = {"HELPLINE_DLQ_WINDOW": str(DLQ_WINDOW)}
    async with open_run("poison-pure", valid, infra, fault_dir, env=env) as run:
        bad = [
            Message(CASES_OPENED.name, uuid.uuid4().bytes, b"{not json", None, "flood", ("triage",))
            for _ in range(flood)
        ]
        _, task = start_load(run, bad, 3.0)
        await task
        run.note(f"flood: {flood} bad messages on {CASES_OPENED.name} published")
        statuses: list[int | None] = []
        for _ in range(300):  # up to a minute for the bound to show
            statuses.append(await readiness(run, "triage"))
            if statuses[-1] == 503:
                break
            await asyncio.sleep(0.2)
        tripped = 503 in statuses
        run.note(f"triage readiness while flooded: {sorted(set(map(str, statuses)))}")
        counted, lines = await _dead_letter_lines(run, "triage")

        _, task = start_load(run, valid_messages(run, valid), 10.0)
        await task
        settled = await settle(run)
        final: int | None = None
        for _ in range(150):
            final = await readiness(run, "triage")
            if final == 200:
                break
            await asyncio.sleep(0.2)
        counted_after, _ = await _dead_letter_lines(run, "triage")
        await assert_invariants(
            run,
            settled=settled,
            extra=[
                Check(
                    "bound tripped: triage not ready", tripped, f"readiness seen {statuses[-5:]}"
                ),
                Check(
                    "bound shows in /metrics",
                    counted > 0 and counted_after == flood,
                    f"helpline_dead_letters_total {counted} during, {counted_after} after "
                    f"(flood {flood}); lines: {lines[:4]}",
                ),
                Check("recovered: triage ready after the flood", final == 200, f"last {final}"),
            ],
        )
