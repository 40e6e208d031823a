"""Snapshots of the headline totals on `helpline.metrics.snapshots`, for subscribers.

:class:`SnapshotPublisher` checks every `debounce_s` (default 1 s) whether metrics counted
new events since its last snapshot and publishes one if so, and publishes one every
`interval_s` (default 60 s) whatever happened: at most one snapshot per `debounce_s` however
fast the totals change, and never more than `interval_s` between two.

A snapshot is derived state, not a fact: it is published straight to the broker, not through
an outbox. A lost one is replaced by the next; a repeated one has the same `event_id` (uuid5
of its sequence and figures). Its `sequence` is the number of events counted (the rows of
`metrics.inbox`), read in the same snapshot of the database as the figures, so a larger
sequence always means newer totals. Several replicas each publish; subscribers keep the
highest sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from typing import Any

from faststream.kafka import KafkaBroker

from helpline_metrics.figures import DECIDED_STATES
from helpline_shared import cloudevents
from helpline_shared.db import Conn, Database
from helpline_shared.events import (
    TAKEDOWN_DECISIONS,
    MetricsSnapshotV1,
    PlatformFiguresV1,
    derive_id,
    utcnow,
)
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import get_logger
from helpline_shared.topics import METRICS_SNAPSHOTS

SOURCE = "urn:helpline:metrics"
KEY = b"totals"
OPEN_STATES = ("submitted", "needs_manual")  # escalated, neither decided nor failed yet

log = get_logger("helpline.metrics.snapshots")


async def sequence(conn: Conn) -> int:
    """How many events metrics has counted: grows with every batch that changed a total."""
    return int(await conn.fetchval("SELECT count(*) FROM metrics.inbox"))


async def read_snapshot(conn: Conn) -> MetricsSnapshotV1:
    """The headline totals and their sequence, read in one consistent database snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        seq = await sequence(conn)
        counters = {
            (r["name"], r["label"]): int(r["value"])
            for r in await conn.fetch(
                """SELECT name, label, value FROM metrics.counters WHERE name = ANY($1::text[])""",
                ["cases_total", "urls_total", "urls_escalated", "decisions", "takedowns"],
            )
        }
        rows = await conn.fetch(
            """SELECT platform, state, decision, count(*) AS n FROM metrics.escalations
               GROUP BY platform, state, decision"""
        )
    platforms: dict[str, dict[str, int]] = defaultdict(
        lambda: {"decisions": 0, "takedowns": 0, "open_escalations": 0}
    )
    for r in rows:
        of = platforms[r["platform"]]
        if r["state"] in DECIDED_STATES:
            of["decisions"] += r["n"]
            if r["decision"] in TAKEDOWN_DECISIONS:
                of["takedowns"] += r["n"]
        elif r["state"] in OPEN_STATES:
            of["open_escalations"] += r["n"]
    by_type = {label: n for (name, label), n in sorted(counters.items()) if name == "decisions"}
    decided = sum(by_type.values())
    takedowns = counters.get(("takedowns", ""), 0)
    figures: dict[str, Any] = {
        "sequence": seq,
        "cases": counters.get(("cases_total", ""), 0),
        "urls": counters.get(("urls_total", ""), 0),
        "url_reports": counters.get(("urls_total", ""), 0),
        "urls_escalated": counters.get(("urls_escalated", ""), 0),
        "decisions": decided,
        "decisions_by_type": {k: v for k, v in by_type.items() if v},
        "takedowns": takedowns,
        "takedown_rate": round(takedowns / decided, 4) if decided else None,
        "open_escalations": sum(p["open_escalations"] for p in platforms.values()),
        "platforms": {p: PlatformFiguresV1(**f) for p, f in sorted(platforms.items())},
    }
    content = MetricsSnapshotV1.model_validate(
        {**figures, "event_id": derive_id("none"), "as_of": utcnow()}
    ).model_dump_json(exclude={"event_id", "as_of"})
    return MetricsSnapshotV1.model_validate(
        {**figures, "event_id": derive_id("metrics.snapshot", seq, content), "as_of": utcnow()}
    )


def snapshot_message(snapshot: MetricsSnapshotV1) -> OutgoingMessage:
    return cloudevents.event_message(
        METRICS_SNAPSHOTS.name,
        snapshot,
        event_id=snapshot.event_id,
        key=KEY,
        type_="helpline.metrics.snapshot.v1",
        source=SOURCE,
        time=snapshot.as_of,
    )


class SnapshotPublisher:
    """Publishes snapshots while started: on change (debounced) and at an interval."""

    def __init__(
        self, db: Database, broker: KafkaBroker, *, interval_s: float, debounce_s: float
    ) -> None:
        self._db = db
        self._broker = broker
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self.published = 0
        self.last_event_id: uuid.UUID | None = None
        self._last_sequence: int | None = None
        self._last_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metrics-snapshots")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def tick(self) -> bool:
        """Publish a snapshot if the totals changed or the interval passed; True if sent."""
        async with self._db.pool.acquire() as conn:
            due = time.monotonic() - self._last_at >= self.interval_s
            if not due and await sequence(conn) == self._last_sequence:
                return False
            snapshot = await read_snapshot(conn)
        await publish_all(self._broker, [snapshot_message(snapshot)])
        self._last_sequence, self._last_at = snapshot.sequence, time.monotonic()
        self.published += 1
        self.last_event_id = snapshot.event_id
        return True

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.tick()
                if failing:
                    log.info("snapshots published again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or broker is away: try again next tick
                if not failing:
                    log.warning("snapshot not published", error=type(exc).__name__)
                failing = True
            await asyncio.sleep(self.debounce_s)
