"""`helpline reporter erase` removes a reporter's personal data from every table that held
it, by email (every case filed with it and every refused message holding it) or by case
id, keeps every row and count, audits the erasure without the email, and finds nothing the
second time. Runs intake on the real broker and database and the command as operators do."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

import asyncpg
import pytest

from helpline_intake import erasure
from tests.infra import Infra
from tests.intake_support import IntakeUnderTest, intake_under_test, record, report
from tests.test_report_form import form_tokens

SCANNED_TYPES = ("text", "character varying", "bytea", "jsonb", "json", "ARRAY")


@pytest.fixture
async def intake(infra: Infra, topics_settings: object) -> AsyncIterator[IntakeUnderTest]:
    async for found in intake_under_test(infra):
        yield found


def person() -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {
        "name": f"Ottoline Brackenbury{tag}",
        "email": f"O.Brackenbury.{tag}@family-mail.example",
        "role": f"parent-{tag}",
    }


async def erase(database_url: str, *args: str, servers: str | None = None) -> tuple[int, str]:
    """Runs `helpline reporter erase` with stdin not a terminal; (exit code, output). With
    `servers`, it relays the null reporters it queues to that broker."""
    env = {**os.environ, "HELPLINE_DATABASE_URL": database_url}
    if servers is not None:
        env["HELPLINE_KAFKA_BOOTSTRAP_SERVERS"] = servers
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "helpline_cli.main",
        "reporter",
        "erase",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def holding(conn: asyncpg.Connection[Any], secret: str) -> list[str]:
    """Every column, in every schema, whose text, bytes, JSON or array values hold
    `secret` (case-insensitively)."""
    columns = await conn.fetch(
        """SELECT c.table_schema, c.table_name, c.column_name, c.data_type
           FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE t.table_type = 'BASE TABLE'
             AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
             AND c.data_type = ANY($1::text[])""",
        list(SCANNED_TYPES),
    )
    assert {c["table_schema"] for c in columns} >= {"intake", "triage", "escalator", "metrics"}
    found = []
    for c in columns:
        column = f'"{c["table_schema"]}"."{c["table_name"]}"."{c["column_name"]}"'
        quoted = f'"{c["column_name"]}"'
        value = f"encode({quoted}, 'escape')" if c["data_type"] == "bytea" else f"{quoted}::text"
        hits = await conn.fetchval(
            f'SELECT count(*) FROM "{c["table_schema"]}"."{c["table_name"]}"'
            f" WHERE position($1 in lower({value})) > 0",
            secret.lower(),
        )
        if hits:
            found.append(column)
    return found


async def row_counts(conn: asyncpg.Connection[Any]) -> dict[str, int]:
    """Rows per table in every schema, and intake's and metrics' counts."""
    tables = await conn.fetch(
        """SELECT table_schema, table_name FROM information_schema.tables
           WHERE table_type = 'BASE TABLE'
             AND table_schema NOT IN ('pg_catalog', 'information_schema')"""
    )
    counts = {}
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        if name != '"intake"."erasures"':
            counts[name] = await conn.fetchval(f"SELECT count(*) FROM {name}")
    counts["duplicates"] = await conn.fetchval("SELECT sum(duplicates) FROM intake.reports")
    for r in await conn.fetch("SELECT name, label, value FROM metrics.counters"):
        counts[f"metrics {r['name']} {r['label']}"] = r["value"]
    return counts


async def test_erasure_by_email_and_by_case_id(intake: IntakeUnderTest) -> None:
    source = f"erase-{uuid.uuid4().hex[:8]}"
    reporter, other = person(), person()
    first = report(source, "a", reporter=reporter)
    second = report(source, "b", reporter={**reporter, "email": reporter["email"].upper()})
    theirs = report(source, "c", reporter=other)
    conflicting = report(source, "a", reporter=reporter, description="Other text entirely")
    refused = report(source, "d", reporter=reporter, urls=[])
    messages = [first, second, theirs, first, conflicting, refused]
    raw = [json.dumps(m).encode() for m in messages]
    # Not JSON: a form-encoded body sent to the topic, the email percent-encoded.
    raw.append(f"name=Ottoline&email={quote_plus(reporter['email'])}".encode())
    await intake.service.process([record(7000 + i, r) for i, r in enumerate(raw)])
    form = {"name": reporter["name"], "email": reporter["email"], "role": "parent"}
    form |= await form_tokens(intake.http)
    assert (await intake.http.post("/report", data=form)).status_code == 422
    conn = intake.db.pool
    cases = {
        r["report_id"]: r["case_id"]
        for r in await conn.fetch(
            "SELECT report_id, case_id FROM intake.reports WHERE source = $1", source
        )
    }
    assert sorted(cases) == ["a", "b", "c"]
    async with conn.acquire() as c:
        # Before: the scan finds the email where intake keeps it, and nowhere else.
        assert sorted(await holding(c, reporter["email"])) == [
            '"intake"."rejections"."original"',
            '"intake"."reports"."reporter_email"',
        ]
        before = await row_counts(c)
    holding_before = await conn.fetchval(
        "SELECT count(*) FROM intake.rejections"
        " WHERE position($1 in lower(encode(original, 'escape'))) > 0"
        "    OR position($2 in lower(encode(original, 'escape'))) > 0",
        reporter["email"].lower(),
        reporter["email"].lower().replace("@", "%40"),
    )
    # The conflict, the refused report, the form-encoded message and the refused form.
    assert holding_before == 4

    code, out = await erase(intake.database_url, reporter["email"])
    assert code == 2
    assert "--yes" in out
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM intake.reports WHERE lower(reporter_email) = lower($1)",
            reporter["email"],
        )
        == 2
    )

    code, out = await erase(
        intake.database_url,
        reporter["email"],
        "--by",
        "dpo@helpline",
        "--reason",
        "Art. 17",
        "--yes",
        servers=intake.servers,
    )
    assert code == 0, out
    assert "intake.reports: reporter erased in 2 case(s)" in out
    assert "original bytes cleared in 4 refusal(s)" in out
    assert str(cases["a"]) in out
    assert str(cases["b"]) in out
    assert str(cases["c"]) not in out
    for secret in reporter.values():
        assert secret.lower() not in out.lower()

    async with conn.acquire() as c:
        for secret in reporter.values():
            assert await holding(c, secret) == [], secret
        assert await holding(c, other["email"]) == ['"intake"."reports"."reporter_email"']
        assert await row_counts(c) == before
    rows = await conn.fetch(
        "SELECT case_id, reporter_name, reporter_email, reporter_role, organisation,"
        " reporter_erased_at, description FROM intake.reports WHERE case_id = ANY($1::uuid[])",
        [cases["a"], cases["b"]],
    )
    for row in rows:
        assert row["reporter_name"] == "[erased]"
        assert row["reporter_email"] == f"erased+{row['case_id'].hex[:8]}@invalid"
        assert row["reporter_role"] is None
        assert row["reporter_erased_at"] is not None
        assert row["organisation"] == first["organisation"]  # a school, not a person
        assert row["description"] == first["description"]
    audit = await conn.fetchrow("SELECT * FROM intake.erasures")
    assert audit["matched_by"] == "email"
    assert sorted(audit["case_ids"]) == sorted([cases["a"], cases["b"]])
    assert (audit["reports_erased"], audit["rejections_cleared"]) == (2, 4)
    assert (audit["erased_by"], audit["reason"]) == ("dpo@helpline", "Art. 17")
    async with conn.acquire() as c:
        assert await erasure.was_erased(c, reporter["email"].upper())
        assert not await erasure.was_erased(c, other["email"])

    code, out = await erase(intake.database_url, reporter["email"], "--yes")
    assert (code, out.strip()) == (0, "nothing to erase: an earlier erasure matched this email")
    assert await conn.fetchval("SELECT count(*) FROM intake.erasures") == 1

    # A redelivered copy of an erased report is still a duplicate, not a conflict.
    await intake.service.process([record(7100, json.dumps(first).encode())])
    assert (
        await conn.fetchval("SELECT duplicates FROM intake.reports WHERE case_id = $1", cases["a"])
        == 2
    )
    assert (
        await conn.fetchval(
            "SELECT reporter_name FROM intake.reports WHERE case_id = $1", cases["a"]
        )
        == "[erased]"
    )

    # By case id: that case only, audited without any email.
    code, out = await erase(
        intake.database_url, str(cases["c"]), "--yes", "--by", "dpo", servers=intake.servers
    )
    assert code == 0, out
    assert "reporter erased in 1 case(s)" in out
    async with conn.acquire() as c:
        for secret in other.values():
            assert await holding(c, secret) == [], secret
    audit = await conn.fetchrow("SELECT * FROM intake.erasures WHERE matched_by = 'case_id'")
    assert audit["case_ids"] == [cases["c"]]
    assert audit["email_hash"] is None
    code, out = await erase(intake.database_url, str(cases["c"]), "--yes")
    assert (code, out.strip()) == (0, "nothing to erase: the case's reporter was already erased")
    code, out = await erase(intake.database_url, str(uuid.uuid4()), "--yes")
    assert code == 1
    assert out.startswith("no case ")
    code, _ = await erase(intake.database_url, "not-a-case-or-email", "--yes")
    assert code == 2
    assert await conn.fetchval("SELECT count(*) FROM intake.erasures") == 2


def test_target_parsing() -> None:
    case_id = uuid.uuid4()
    assert erasure.Target.parse(f" {case_id} ") == erasure.Target("case_id", case_id=case_id)
    assert erasure.Target.parse("a@b.example").email == "a@b.example"
    with pytest.raises(ValueError, match="case id"):
        erasure.Target.parse("someone")
    salt = b"s" * 16
    assert erasure.email_digest(" A@B.example", salt) == erasure.email_digest("a@b.example", salt)
    assert erasure.email_digest("a@b.example", salt) != erasure.email_digest("a@b.example", b"t")
