"""The pipeline run: reports published, timed to their last outcome."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiokafka import AIOKafkaConsumer

from helpline_cli.bench.workload import Figures, produce
from helpline_cli.stack import Stack
from helpline_shared.events import EscalationOutcomeV1, derive_id
from helpline_shared.kafka import client_kwargs
from helpline_shared.topics import ESCALATION_OUTCOMES, REPORTS_SUBMITTED


class Completion:
    """Which of the bench's reports have every URL's outcome (other than `submitted`) on
    `helpline.escalations.outcomes`; reports are known by their index in `payloads`."""

    def __init__(self, payloads: list[bytes]) -> None:
        reports = [json.loads(p) for p in payloads]
        self.index = {derive_id("case", "bench", r["report_id"]): i for i, r in enumerate(reports)}
        self._expected = [len(set(r["urls"])) for r in reports]
        self._finished: dict[int, set[uuid.UUID]] = {}
        self.done: set[int] = set()

    def see(self, value: bytes) -> int | None:
        """Reads one outcome; returns its report's index when this finished the report."""
        e = EscalationOutcomeV1.model_validate_json(value)
        i = self.index.get(e.case_id)
        if i is None or e.state == "submitted" or i in self.done:
            return None
        self._finished.setdefault(i, set()).add(e.escalation_id)
        if len(self._finished[i]) < self._expected[i]:
            return None
        self.done.add(i)
        return i


async def pipeline(stack: Stack, payloads: list[bytes], urls_per_report: int) -> Figures:
    settings = stack.settings
    completion = Completion(payloads)
    sink = AIOKafkaConsumer(
        ESCALATION_OUTCOMES.name,
        **client_kwargs(settings, "bench-out"),
        group_id=None,
        auto_offset_reset="latest",
    )
    await sink.start()
    await sink.getmany(timeout_ms=200)  # join at the end of the topic before publishing
    done_at: dict[int, float] = {}
    n = len(payloads)

    async def drain() -> None:
        while len(done_at) < n:
            batch = await sink.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    if (i := completion.see(r.value)) is not None:
                        done_at[i] = now

    sink_task = asyncio.create_task(drain())
    sent = await produce(settings, REPORTS_SUBMITTED.name, payloads)
    await asyncio.wait_for(sink_task, 900)
    await sink.stop()
    start = min(sent.values())
    return Figures(
        "pipeline, publish to outcome recorded",
        n,
        max(done_at.values()) - start,
        [(done_at[i] - sent[i]) * 1000 for i in range(n)],
    )
