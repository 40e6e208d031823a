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


async def pipeline(stack: Stack, payloads: list[bytes], urls_per_report: int) -> Figures:
    settings = stack.settings
    case_of = {
        derive_id("case", "bench", json.loads(p)["report_id"]): i for i, p in enumerate(payloads)
    }
    expected = {i: len(set(json.loads(p)["urls"])) for i, p in enumerate(payloads)}
    sink = AIOKafkaConsumer(
        ESCALATION_OUTCOMES.name,
        **client_kwargs(settings, "bench-out"),
        group_id=None,
        auto_offset_reset="latest",
    )
    await sink.start()
    await sink.getmany(timeout_ms=200)  # join at the end of the topic before publishing
    finished: dict[int, set[uuid.UUID]] = {}
    done_at: dict[int, float] = {}
    n = len(payloads)

    async def drain() -> None:
        while len(done_at) < n:
            batch = await sink.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    e = EscalationOutcomeV1.model_validate_json(r.value)
                    i = case_of.get(e.case_id)
                    if i is None or e.state == "submitted":
                        continue
                    finished.setdefault(i, set()).add(e.escalation_id)
                    if len(finished[i]) == expected[i] and i not in done_at:
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
