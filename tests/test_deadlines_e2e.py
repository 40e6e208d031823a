"""Deadlines end to end: the escalator as deployed (its app served, on a dedicated Tansu
broker, real PostgreSQL and the simulator), with deadlines of a second and re-notification
every few tenths of one. A URL two cases reported, which the platform sits on, is announced
`breached` once to each case after its deadline and re-notified exactly `renotify_max`
times, citing the notice's reference: the simulator counts those follow-ups and one notice.
A URL decided before its deadline never breaches."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from helpline_shared.events import CaseTriagedV1, EscalationActivityV1
from helpline_shared.topics import CASES_TRIAGED, ESCALATION_ACTIVITY
from tests import escalator_support
from tests.escalator_support import Stack, escalator_stack, eventually
from tests.helpers import read_topic
from tests.infra import Infra

RENOTIFY_MAX = 3


def casework_stack(
    infra: Infra, tmp_dir: Path, simulator: dict[str, Any], **settings: Any
) -> contextlib.AbstractAsyncContextManager[Stack]:
    """The escalator as deployed, the simulator configured with `simulator` before the
    escalator starts, its decisions asked for often (every 0.2 s, at most every 0.5 s)."""
    return escalator_stack(
        infra,
        tmp_dir,
        database="helpline_casework_e2e",
        simulator=simulator,
        escalation_status_max_interval_s=0.5,
        **settings,
    )


def triaged(url: str, platform: str, *, due_in_s: float | None) -> CaseTriagedV1:
    """A case triage decided with one URL of `platform`, its decision due in `due_in_s`."""
    return escalator_support.triaged(
        url,
        platform,
        urgency="high",
        harm_types=["impersonation"],
        rules_fired=["impersonation"],
        due_in_s=due_in_s,
    )


async def test_a_breach_after_a_short_deadline_and_the_platform_renotified(
    infra: Infra, tmp_dir: Path
) -> None:
    # TikTok sits on every notice; Instagram decides at once.
    sim = {
        "decision_delay_ms": 3_600_000,
        "platforms": {"instagram": {"decision_delay_ms": 0}},
    }
    async with casework_stack(
        infra,
        tmp_dir,
        sim,
        renotify_interval_s=0.3,
        renotify_max=RENOTIFY_MAX,
        deadline_scan_interval_s=0.1,
    ) as stack:
        overdue = "https://www.tiktok.com/@fake_head/video/7301234567890123456"
        first = triaged(overdue, "tiktok", due_in_s=1.0)
        second = triaged(overdue, "tiktok", due_in_s=30.0)  # the earliest deadline counts
        on_time = triaged("https://www.instagram.com/p/CzAbc123/", "instagram", due_in_s=1.0)
        for case in (first, second, on_time):
            await stack.publish(CASES_TRIAGED.name, case.case_id, case)

        async def renotified() -> bool:
            activity = await stack.activity("tiktok")
            return sum(activity["followups_per_reference"].values()) >= RENOTIFY_MAX

        await eventually(renotified, f"{RENOTIFY_MAX} follow-ups")
        await asyncio.sleep(1.0)  # three more intervals: nothing more is sent

        tiktok = await stack.activity("tiktok")
        assert tiktok["notices"] == 1  # never a second notice
        ((reference, followups),) = tiktok["followups_per_reference"].items()
        assert followups == RENOTIFY_MAX
        row = await stack.db.pool.fetchrow(
            "SELECT * FROM escalator.escalations WHERE platform = 'tiktok'"
        )
        assert (row["platform_reference"], row["followups"]) == (reference, RENOTIFY_MAX)
        assert row["state"] == "submitted"
        assert row["next_followup_at"] is None

        cases = {first.case_id, second.case_id, on_time.case_id}
        events = await stack.outcomes(cases)
        breached = [e for e in events if e.state == "breached"]
        assert sorted(str(e.case_id) for e in breached) == sorted(
            [str(first.case_id), str(second.case_id)]
        )
        assert {e.escalation_id for e in breached} == {row["escalation_id"]}
        assert all(e.platform_reference == reference for e in breached)
        assert all(e.due_at == first.decision_due_at for e in breached)
        assert {e.state for e in events if e.case_id == on_time.case_id} == {"decided"}
        assert (await stack.activity("instagram"))["followups"] == 0

        records = await read_topic(
            stack.settings.kafka_bootstrap_servers,
            ESCALATION_ACTIVITY.name,
            keep=lambda r: r.key == str(row["escalation_id"]).encode(),
        )
        activity = [EscalationActivityV1.model_validate_json(r.value) for r in records]
        followup_events = [a for a in activity if a.kind == "followup"]
        assert [a.result for a in followup_events] == ["ok"] * RENOTIFY_MAX
        assert [a.kind for a in activity].count("submit") == 1
