"""Decision deadlines: the rules data's hours per urgency unless a HELPLINE_DEADLINE_<URGENCY>_S
setting gives seconds; the decision (published and kept on the real broker and PostgreSQL)
is due that long after the case was received, and its row says which applied."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from faststream.kafka import KafkaBroker

from helpline_shared.consumer import DeadLetters
from helpline_shared.db import Database
from helpline_shared.events import CaseOpenedV1, CaseTriagedV1
from helpline_shared.settings import Settings, load_settings
from helpline_shared.topics import CASES_TRIAGED
from helpline_triage.deadlines import Deadlines
from helpline_triage.rules import RuleSet
from helpline_triage.usecase import Triage
from tests.helpers import read_topic
from tests.infra import Infra
from tests.triage_support import (
    RECEIVED,
    case_opened,
    case_record,
    connected_broker,
    database_per_test,
)

RULES = RuleSet.load()
# One case of each urgency under the packaged rules.
CASES = {
    "critical": "Someone posted that they will kill our head teacher tomorrow.",
    "high": "A fake account is impersonating our head teacher.",
    "normal": "A parent keeps posting negative reviews about the school.",
}


db = database_per_test("helpline_deadlines")
broker = connected_broker()


def opened(description: str) -> CaseOpenedV1:
    # Content of its own: content other cases reported raises the urgency.
    video = uuid.uuid4().int % 10**19
    return case_opened(description, [f"https://www.tiktok.com/@someone/video/{video}"])


def test_settings_give_seconds_and_the_rules_the_rest() -> None:
    d = Deadlines.from_settings(RULES, Settings(deadline_high_s=2.5, deadline_normal_s=7200))
    assert d.of("high").after == timedelta(seconds=2.5)
    assert d.of("normal").after == timedelta(hours=2)
    assert d.of("critical").after == RULES.deadline("critical")
    assert d.describe() == [
        f"critical: {int(RULES.deadline('critical').total_seconds() // 3600)} h "
        f"(rules {RULES.version} urgency_levels)",
        "high: 2.5 s (settings HELPLINE_DEADLINE_HIGH_S)",
        "normal: 2 h (settings HELPLINE_DEADLINE_NORMAL_S)",
    ]
    assert Deadlines.from_settings(RULES, None).of("high").after == RULES.deadline("high")


def test_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPLINE_DEADLINE_CRITICAL_S", "3")
    d = Deadlines.from_settings(RULES, load_settings())
    assert d.of("critical").after == timedelta(seconds=3)
    assert d.of("critical").source == "settings HELPLINE_DEADLINE_CRITICAL_S"


def test_a_deadline_must_be_a_positive_finite_number() -> None:
    for bad in (0, -1, float("inf")):
        with pytest.raises(ValueError, match=r"deadline_normal_s|DEADLINE_NORMAL_S"):
            Settings(deadline_normal_s=bad)


@pytest.mark.parametrize("configured", [True, False])
async def test_each_decision_is_due_its_urgency_s_deadline_after_receipt(
    db: Database, broker: KafkaBroker, infra: Infra, configured: bool
) -> None:
    seconds = {"critical": 2.0, "high": 5.0, "normal": 11.0}
    settings = (
        Settings(deadline_critical_s=2, deadline_high_s=5, deadline_normal_s=11)
        if configured
        else None
    )
    dead = DeadLetters("triage", max_ratio=0.9, window=10)
    triage = Triage(db, broker, dead, RULES, settings=settings)
    cases = {urgency: opened(text) for urgency, text in CASES.items()}
    await triage.process([case_record(c, n) for n, c in enumerate(cases.values())])

    for urgency, case in cases.items():
        [message] = await read_topic(
            infra.bootstrap_servers,
            CASES_TRIAGED.name,
            keep=lambda r, case=case: r.key == str(case.case_id).encode(),
            expected=1,
        )
        event = CaseTriagedV1.model_validate_json(message.value)
        assert event.urgency == urgency
        row = await db.pool.fetchrow(
            "SELECT decision_due_at, deadline_source FROM triage.decisions WHERE case_id = $1",
            case.case_id,
        )
        assert row is not None
        if configured:
            due = RECEIVED + timedelta(seconds=seconds[urgency])
            source = f"settings HELPLINE_DEADLINE_{urgency.upper()}_S"
        else:
            due = RECEIVED + RULES.deadline(urgency)
            source = f"rules {RULES.version} urgency_levels"
        assert event.decision_due_at == row["decision_due_at"] == due
        assert row["deadline_source"] == source
        # Triage's own decision reads as before re-triage existed.
        assert b'"revision"' not in message.value
