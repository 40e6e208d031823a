"""Reporters' personal data never leaves intake: not on any topic but the one reports are
submitted on (and, the reporter alone, casework's `helpline.cases.reporters`), not in any
log line, whatever the channel and whether the report was
accepted, refused, conflicting or dead-lettered. The full refused bytes stay in intake's
own table until `helpline intake purge` clears them after the retention period."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import structlog

from helpline_intake import repository
from helpline_intake.redaction import redact_dead_letter
from helpline_intake.usecase import Intake
from helpline_shared.consumer import DeadLetters
from helpline_shared.logging import configure_logging
from helpline_shared.topics import ALL_TOPICS, CASE_REPORTERS, REPORTS_SUBMITTED
from tests.helpers import read_topic
from tests.infra import Infra
from tests.intake_support import IntakeUnderTest, intake_under_test, record, report
from tests.test_report_form import form_tokens


@pytest.fixture
async def intake(infra: Infra, topics_settings: object) -> AsyncIterator[IntakeUnderTest]:
    async for found in intake_under_test(infra):
        yield found


@pytest.fixture
def captured_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Every log line, as the services write them (JSON, DEBUG), into `capsys`."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", json=True)
    try:
        yield capsys
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


class Person:
    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.name = f"Zephyrine Quillfeather{tag}"
        self.email = f"zq.{tag}@oakfield-family.example"
        self.phone = f"+44 7700 9{secrets.randbelow(10**5):05d}"
        self.digits = self.phone.replace(" ", "")[-9:]

    @property
    def strings(self) -> list[str]:
        return [self.name, self.email, self.phone, self.digits, self.email.split("@")[0]]

    def reporter(self, **extra: Any) -> dict[str, Any]:
        return {"name": self.name, "email": self.email, "role": self.phone, **extra}


def carried(r: Any) -> bytes:
    """Everything a record carries, refused originals (base64) decoded."""
    parts = [r.key or b"", r.value or b""]
    parts += [k.encode() + b"=" + (v or b"") for k, v in r.headers or ()]
    try:
        encoded = json.loads(r.value).get("original_base64") or ""
        parts.append(base64.b64decode(encoded))
    except (ValueError, AttributeError):
        pass
    return b"\n".join(parts)


async def submit_everything(intake: IntakeUnderTest, person: Person, source: str) -> None:
    dead = DeadLetters("intake", max_ratio=1.0, window=100, redact=redact_dead_letter)
    kafka = Intake(intake.db, intake.broker, dead)
    good = report(source, "ok", reporter=person.reporter())
    poison = report(source, "poison", reporter=person.reporter())
    bad_email = report(source, "bad-email", reporter={**person.reporter(), "email": person.name})
    extra = report(source, "extra", reporter=person.reporter(phone=person.phone))
    extra["email"] = person.email
    conflicting = report(source, "ok", reporter=person.reporter(), description="Other text")
    not_json = f"name={person.name}&email={person.email}&phone={person.phone}".encode()
    await kafka.process(
        [
            record(9000 + i, raw)
            for i, raw in enumerate(
                [json.dumps(x).encode() for x in (good, bad_email, extra, conflicting)] + [not_json]
            )
        ]
    )
    # A report the database refuses goes to the dead-letter topic.
    real_insert = repository.insert_reports

    async def refuse_poison(conn: Any, reports: Any) -> Any:
        if any(r.report.report_id == "poison" for r in reports):
            raise asyncpg.DataError("value out of range")
        return await real_insert(conn, reports)

    repository.insert_reports = refuse_poison  # type: ignore[assignment]
    try:
        await kafka.process([record(9100, json.dumps(poison).encode())])
    finally:
        repository.insert_reports = real_insert  # type: ignore[assignment]
    assert await dead.flush(intake.broker) == 1

    http = intake.http
    assert (await http.post("/v1/reports", json=report(source, "h-ok"))).status_code == 202
    assert (await http.post("/v1/reports", json=extra)).status_code == 422
    assert (await http.post("/v1/reports", json=conflicting)).status_code == 409
    wrong_type = await http.post(
        "/v1/reports", content=json.dumps(good), headers={"content-type": "text/plain"}
    )
    assert wrong_type.status_code == 422
    form = {"name": person.name, "email": person.email, "role": person.phone}
    form |= await form_tokens(http)
    assert (await http.post("/report", data=form)).status_code == 422
    valid_form = {**form, "description": "Bullying", "urls": "https://www.tiktok.com/@a"}
    assert (await http.post("/report", data=valid_form)).status_code == 202


async def test_no_personal_data_on_any_other_topic_nor_in_any_log_line(
    intake: IntakeUnderTest, captured_logs: pytest.CaptureFixture[str]
) -> None:
    person = Person()
    source = f"src-{uuid.uuid4().hex[:8]}"

    await submit_everything(intake, person, source)

    # The refusals are there, counted and stored (with the full bytes, here only).
    stored = await intake.db.pool.fetch(
        "SELECT original FROM intake.rejections WHERE position($1::bytea in original) > 0",
        person.name.encode(),
    )
    assert len(stored) >= 6
    logs = captured_logs.readouterr()
    assert "report rejected" in logs.err
    for topic in ALL_TOPICS:
        if topic.name == REPORTS_SUBMITTED.name:
            continue
        for r in await read_topic(intake.servers, topic.name):
            text = carried(r)
            if topic.name == CASE_REPORTERS.name:
                # Casework's copy of each case's reporter: there, and only in `reporter`.
                value = json.loads(r.value)
                assert set(value["reporter"] or {}) <= {"name", "email", "role"}
                text = text.replace(
                    json.dumps(value["reporter"], separators=(",", ":")).encode(), b""
                )
            for secret in person.strings:
                assert secret.encode() not in text, f"{secret!r} on {topic.name}: {text!r}"
    for secret in person.strings:
        assert secret not in logs.out + logs.err, f"{secret!r} in a log line"
    # The accepted reports did go onto the submitted topic (the only place allowed).
    submitted = await read_topic(
        intake.servers,
        REPORTS_SUBMITTED.name,
        keep=lambda r: person.name.encode() in (r.value or b""),
    )
    assert len(submitted) == 1  # the valid form (the HTTP report has the example reporter)


async def purge(database_url: str, *args: str) -> str:
    """Runs `helpline intake purge` as operators do; returns what it printed."""
    env = {**os.environ, "HELPLINE_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "helpline_cli.main",
        "intake",
        "purge",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_purge_clears_refused_bytes_past_the_retention_period(
    intake: IntakeUnderTest,
) -> None:
    answer = await intake.http.post("/v1/reports", json={"schema_version": 1, "x": "secret"})
    rid = uuid.UUID(answer.json()["rejection_id"])
    await intake.db.pool.execute(
        "UPDATE intake.rejections SET rejected_at = now() - interval '40 days' "
        "WHERE rejection_id = $1",
        rid,
    )

    kept = await purge(intake.database_url, "--older-than-days", "60")
    assert await intake.db.pool.fetchval(
        "SELECT original IS NOT NULL FROM intake.rejections WHERE rejection_id = $1", rid
    )
    cleared = await purge(intake.database_url)  # the default retention, 30 days

    row = await intake.db.pool.fetchrow(
        "SELECT original, reasons FROM intake.rejections WHERE rejection_id = $1", rid
    )
    assert row["original"] is None
    assert row["reasons"]
    assert "of 0 rejection(s) older than 60 day(s)" in kept
    assert "older than 30 day(s)" in cleared
    assert "of 0 rejection(s)" not in cleared
