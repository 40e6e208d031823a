"""Totals snapshots on real PostgreSQL and the real broker: their figures equal the events
counted by hand and `/v1/totals`; they are published on change (debounced) and at an
interval, with CloudEvents headers, a growing sequence and a content-derived id."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from helpline_metrics import projection
from helpline_metrics.snapshots import SnapshotPublisher, read_snapshot
from helpline_metrics.totals import totals
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationOutcomeV1,
    MetricsSnapshotV1,
    TriagedUrl,
    derive_id,
    utcnow,
)
from helpline_shared.settings import Settings
from helpline_shared.topics import METRICS_SNAPSHOTS
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra

# (platform, states reached in order, decision): one URL of one case each.
URLS: list[tuple[str, list[str], str | None]] = [
    ("tiktok", ["submitted", "decided"], "removed"),
    ("tiktok", ["submitted", "decided"], "already_gone"),
    ("tiktok", ["submitted", "decided"], "no_violation"),
    ("tiktok", ["submitted"], None),
    ("x", ["submitted", "decided"], "disabled"),
    ("x", ["needs_manual"], None),
    ("instagram", ["failed"], None),
]


def case_events(tag: str, urls: list[tuple[str, list[str], str | None]]) -> list[Any]:
    """Two cases splitting `urls`, and every outcome of each URL."""
    events: list[Any] = []
    for half, part in enumerate((urls[::2], urls[1::2])):
        case_id = derive_id("snapshot-test", tag, half)
        triaged = [
            TriagedUrl(
                url_id=derive_id(case_id, n),
                url=f"https://{p}.example/{tag}/{half}/{n}",
                normalized_url=f"https://{p}.example/{tag}/{half}/{n}",
                platform=p,
                route="platform",
            )
            for n, (p, _, _) in enumerate(part)
        ]
        events.append(
            CaseTriagedV1(
                event_id=derive_id("t", case_id),
                case_id=case_id,
                received_at=utcnow(),
                triaged_at=utcnow(),
                harm_types=["bullying_harassment"],
                urgency="normal",
                route="platform",
                rules_fired=[],
                urls=triaged,
            )
        )
        for u, (platform, states, decision) in zip(triaged, part, strict=True):
            for state in states:
                events.append(
                    EscalationOutcomeV1.model_validate(
                        {
                            "event_id": derive_id("o", u.url_id, state),
                            "case_id": case_id,
                            "escalation_id": u.url_id,
                            "url_id": u.url_id,
                            "platform": platform,
                            "url": u.url,
                            "state": state,
                            "decision": decision if state == "decided" else None,
                            "attempts": 1,
                            "received_at": utcnow(),
                            "occurred_at": utcnow(),
                        }
                    )
                )
    return events


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    database = Database(await fresh_database(infra, "helpline_snapshots"))
    await database.open()
    try:
        yield database
    finally:
        await database.close()


async def fold(db: Database, events: list[Any]) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        await projection.apply(conn, events)


async def test_snapshot_figures_equal_the_events_and_the_totals(db: Database) -> None:
    events = case_events("figures", URLS)
    await fold(db, events)
    await fold(db, events)  # redelivered: nothing changes, not even the sequence
    async with db.pool.acquire() as conn:
        snap = await read_snapshot(conn)
        again = await read_snapshot(conn)
        api = await totals(conn)

    # By hand, from URLS.
    assert snap.sequence == len(events)
    assert (snap.cases, snap.urls, snap.url_reports) == (2, 7, 7)
    assert snap.urls_escalated == 5  # submitted at some point: not needs_manual, not failed
    assert snap.decisions == 4
    assert snap.decisions_by_type == {
        "already_gone": 1,
        "disabled": 1,
        "no_violation": 1,
        "removed": 1,
    }
    assert snap.takedowns == 3
    assert snap.takedown_rate == 0.75
    assert snap.open_escalations == 2  # tiktok submitted, x needs manual
    assert {p: f.model_dump() for p, f in snap.platforms.items()} == {
        "instagram": {"decisions": 0, "takedowns": 0, "open_escalations": 0},
        "tiktok": {"decisions": 3, "takedowns": 2, "open_escalations": 1},
        "x": {"decisions": 1, "takedowns": 1, "open_escalations": 1},
    }
    # The API's document says the same.
    assert (snap.cases, snap.urls, snap.urls_escalated) == (
        api["cases"],
        api["urls"],
        api["urls_escalated"],
    )
    assert snap.url_reports == api["url_reports"]["total"]
    assert snap.decisions_by_type == api["decisions"]
    assert (snap.takedowns, snap.takedown_rate) == (api["takedowns"], api["takedown_rate"])
    assert snap.decisions == api["escalations"]["by_state"]["decided"]
    assert {p: f.decisions for p, f in snap.platforms.items() if f.decisions} == {
        p: sum(by_type.values()) for p, by_type in api["decisions_by_platform"].items()
    }
    assert {p: f.takedowns for p, f in snap.platforms.items() if f.decisions} == (
        api["takedowns_by_platform"]
    )
    assert {p: f.open_escalations for p, f in snap.platforms.items() if f.open_escalations} == {
        p: o["open"] for p, o in api["open_escalations"].items()
    }
    # Same totals, same id; the time it was read is not part of it.
    assert again.event_id == snap.event_id
    assert again.as_of >= snap.as_of

    await fold(db, case_events("more", URLS[:2]))
    async with db.pool.acquire() as conn:
        later = await read_snapshot(conn)
    assert later.sequence > snap.sequence
    assert later.event_id != snap.event_id
    assert (later.cases, later.takedowns) == (4, 5)


async def _published(servers: str, ids: set[uuid.UUID], expected: int) -> list[Any]:
    return await read_topic(
        servers,
        METRICS_SNAPSHOTS.name,
        keep=lambda r: uuid.UUID(json.loads(r.value)["event_id"]) in ids,
        expected=expected,
        timeout_s=15,
    )


async def test_published_on_change_debounced_and_at_an_interval(
    db: Database, topics_settings: Settings
) -> None:
    servers = topics_settings.kafka_bootstrap_servers
    broker = KafkaBroker(servers)
    await broker.connect()
    try:
        publisher = SnapshotPublisher(db, broker, interval_s=3600, debounce_s=0.2)
        sent: list[uuid.UUID] = []

        async def latest_id() -> uuid.UUID:
            async with db.pool.acquire() as conn:
                return (await read_snapshot(conn)).event_id

        assert await publisher.tick()  # the first one goes out at once
        sent.append(await latest_id())
        assert not await publisher.tick()  # nothing changed, the interval has not passed
        await fold(db, case_events("change", URLS))
        assert await publisher.tick()
        sent.append(await latest_id())
        assert not await publisher.tick()

        # Running: a change is published within about one debounce period, and a burst of
        # changes inside one period gives one snapshot, not one per batch.
        await publisher.start()
        await asyncio.sleep(0.5)
        before = publisher.published
        started = time.monotonic()
        for n in range(5):
            await fold(db, case_events(f"burst-{n}", URLS[:2]))
        sent.append(await latest_id())
        deadline = time.monotonic() + 5
        while publisher.last_event_id != sent[-1] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # nothing changes any more: nothing more goes out
        await publisher.stop()
        elapsed = time.monotonic() - started
        assert publisher.last_event_id == sent[-1]
        during = publisher.published - before
        assert 1 <= during <= elapsed / publisher.debounce_s + 1, (during, elapsed)

        # Without change, the interval alone publishes again (the same figures, same id).
        publisher.interval_s = 0.01
        assert await publisher.tick()
        assert publisher.last_event_id == sent[-1]

        records = await _published(servers, set(sent), expected=4)
    finally:
        await broker.stop()

    snapshots = [MetricsSnapshotV1.model_validate_json(r.value) for r in records]
    assert [s.event_id for s in snapshots] == [*sent, sent[-1]]  # in order, on one partition
    assert [s.cases for s in snapshots] == [0, 2, 12, 12]  # 2 cases, then 5 bursts of 2
    assert snapshots[-1].as_of > snapshots[-2].as_of
    for r, s in zip(records, snapshots, strict=True):
        headers = {k: v.decode() for k, v in r.headers}
        assert r.key == b"totals"
        assert headers["ce_id"] == str(s.event_id)
        assert headers["ce_type"] == "helpline.metrics.snapshot.v1"
        assert headers["ce_source"] == "urn:helpline:metrics"
        assert headers["ce_specversion"] == "1.0"
        assert headers["content-type"] == "application/json"
