"""The checks every scenario ends with, read from the database, the topics, the simulator
and the metrics service, never from the services' own view of themselves.

Escalations are shared by content: every reported URL of every case is a link
(`escalator.escalation_cases`) to its content's escalation, so the checks count links
against the URLs sent and escalations against distinct content: every link ends final and
its case told (metrics counts each case's outcome events per link), at most one notice per
content per platform, and the totals exact at both levels.

`settle` waits until the pipeline is done (or stops moving); `assert_invariants` then runs
every check, prints the scenario's summary and fails with the evidence of each failed one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

from helpline_shared.topics import DEAD_LETTERS, REPORTS_REJECTED
from tests.faults.harness import Position, Run, background_done
from tests.faults.progress import Check, Summary
from tests.helpers import every_scope_key, keyed_client

TERMINAL = ("decided", "failed", "needs_manual")
TAKEDOWNS = ("removed", "disabled", "already_gone")


async def _totals(run: Run) -> dict[str, Any] | None:
    key = await every_scope_key(run.stack.settings.database_url or "")
    async with keyed_client(key=key, timeout=10.0) as client:
        try:
            r = await client.get(f"{run.stack.url('metrics')}/v1/totals")
            return r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            return None


async def _snapshot(run: Run, db: asyncpg.Connection) -> dict[str, Any]:
    cases = await db.fetchval("SELECT count(*) FROM intake.reports WHERE source = $1", run.source)
    escalations = await db.fetchval("SELECT count(*) FROM escalator.escalations")
    links = await db.fetchval("SELECT count(*) FROM escalator.escalation_cases")
    open_ = await db.fetchval(
        "SELECT count(*) FROM escalator.escalations WHERE state <> ALL($1::text[])",
        list(TERMINAL),
    )
    rejections = await db.fetchval("SELECT count(*) FROM intake.rejections")
    all_cases = await db.fetchval("SELECT count(*) FROM intake.reports")
    t = await _totals(run) or {}
    return {
        "cases": cases,
        "escalations": escalations,
        "links": links,
        "open": open_,
        "metrics_cases": t.get("cases"),
        "metrics_escalations": (t.get("escalations") or {}).get("total"),
        "metrics_by_state": (t.get("escalations") or {}).get("by_state"),
        "metrics_reports_by_state": (t.get("url_reports") or {}).get("by_state"),
        "metrics_rejected": t.get("reports_rejected"),
        "all_cases": all_cases,
        "rejections": rejections,
    }


def _done(run: Run, s: dict[str, Any]) -> bool:
    return bool(
        s["cases"] == len(run.reports)
        and s["links"] >= run.urls
        and s["open"] == 0
        and s["metrics_cases"] == s["all_cases"]
        and s["metrics_escalations"] == s["escalations"]
        and s["metrics_rejected"] == s["rejections"]
        and sum((s["metrics_by_state"] or {}).get(k, 0) for k in TERMINAL) == s["escalations"]
        and sum((s["metrics_reports_by_state"] or {}).get(k, 0) for k in TERMINAL) == s["links"]
    )


async def settle(run: Run, timeout_s: float | None = None, stall_s: float = 60.0) -> bool:
    """Wait until every report is stored, escalated to a final state and counted, or until
    nothing has moved for `stall_s`. Returns whether it settled."""
    await background_done()
    timeout_s = timeout_s or 240.0 + run.size / 20
    deadline = time.monotonic() + timeout_s
    task = run.progress.task(f"{run.name}: settle", run.urls)
    db = await asyncpg.connect(run.stack.settings.database_url)
    last: dict[str, Any] = {}
    moved = time.monotonic()
    try:
        while True:
            try:
                s = await _snapshot(run, db)
            except (OSError, asyncpg.PostgresError) as exc:
                s = {"error": str(exc)}
                await db.close()
                db = await asyncpg.connect(run.stack.settings.database_url)
            if s != last:
                last, moved = s, time.monotonic()
            if "error" not in s:
                run.progress.update(
                    task, s["escalations"] - s["open"], f"{run.name}: settle {s['cases']} cases"
                )
                if _done(run, s):
                    run.note(f"settled: {s}")
                    return True
            now = time.monotonic()
            if now > deadline or now - moved > stall_s:
                run.note(f"did NOT settle (stalled {now - moved:.0f}s): {last}")
                return False
            await asyncio.sleep(1.0)
    finally:
        run.progress.done(task)
        await db.close()


async def read_all(servers: str, topic: str, at_least: int, timeout_s: float = 60.0) -> list[Any]:
    """Every record of `topic`: read until `at_least` are in and then 3 s bring nothing new
    (the embedded broker's end offsets cannot be trusted, see the design notes)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        auto_offset_reset="earliest",
        group_id=None,
        max_partition_fetch_bytes=4_000_000,
        fetch_max_bytes=16_000_000,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += records
            if batch:
                quiet_since = time.monotonic()
            elif len(out) >= at_least and time.monotonic() - quiet_since > 3:
                break
    finally:
        await consumer.stop()
    return out


def source_position(record: Any) -> Position | None:
    """Where a rejected or dead-lettered message came from: the `*source_topic`,
    `*source_partition`, `*source_offset` headers, else the same fields in the JSON body."""
    found: dict[str, str] = {}
    for k, v in record.headers or ():
        for part in ("topic", "partition", "offset"):
            if k.endswith(f"source_{part}"):
                found[part] = v.decode("utf-8", "replace")
    if len(found) < 3:
        try:
            body = json.loads(record.value)
        except (ValueError, TypeError):
            body = None
        if isinstance(body, dict):
            for scope in (body, body.get("origin"), body.get("source")):
                if isinstance(scope, dict):
                    for part in ("topic", "partition", "offset"):
                        for name in (f"source_{part}", part):
                            if scope.get(name) is not None and part not in found:
                                found[part] = str(scope[name])
    try:
        return Position(found["topic"], int(found["partition"]), int(found["offset"]))
    except (KeyError, ValueError):
        return None


async def malformed_check(run: Run) -> Check:
    """Each malformed message is on its consumer's rejected or dead-letter topic exactly
    once per source position (intake: rejected or intake.dlq; the others: their dlq)."""
    if not run.bad:
        return Check("malformed messages on their topic once", True, "none published")
    expected: Counter[str] = Counter(s for m in run.bad.values() for s in m.consumers)
    seen: Counter[tuple[str, Position]] = Counter()
    topics = {REPORTS_REJECTED.name: "intake"} | {t.name: s for s, t in DEAD_LETTERS.items()}
    for topic, service in topics.items():
        want = expected[service] if topic != REPORTS_REJECTED.name else 0
        for record in await read_all(run.servers, topic, want, timeout_s=30):
            pos = source_position(record)
            if pos is not None and pos in run.bad:
                seen[(service, pos)] += 1
    missing = []
    repeated = []
    for pos, m in run.bad.items():
        for service in m.consumers:
            n = seen[(service, pos)]
            if n == 0:
                missing.append(f"{service}<-{m.kind}@{pos.topic}:{pos.partition}:{pos.offset}")
            elif n > 1:
                repeated.append(f"{service}<-{m.kind}@{pos.offset} x{n}")
    kinds = Counter(m.split("<-")[0] + ":" + m.split("<-")[1].split("@")[0] for m in missing)
    evidence = (
        f"{sum(expected.values())} expected, {len(missing)} missing {dict(kinds)}, "
        f"{len(repeated)} repeated {repeated[:5]}"
    )
    return Check("malformed messages on their topic once", not missing and not repeated, evidence)


async def assert_invariants(
    run: Run, *, settled: bool | None = None, extra: list[Check] | None = None
) -> Summary:
    """Run every check (and a scenario's own `extra` ones), show the summary, and fail
    listing each failed check's evidence."""
    if settled is None:
        settled = await settle(run)
    checks: list[Check] = [Check("pipeline settled", settled, str(run.timeline[-1][1])[:300])]
    db = await asyncpg.connect(run.stack.settings.database_url)
    try:
        checks += await _database_checks(run, db)
        checks.append(await malformed_check(run))
    finally:
        await db.close()
    checks += extra or []
    dead = [n for n in run.stack.dead() if n not in run.stopped]
    checks.append(
        Check(
            "every process up and recovered",
            not dead and not run.problems,
            f"dead: {dead}; problems: {run.problems}",
        )
    )
    summary = Summary(
        run.name,
        len(run.reports),
        run.expected_bad,
        time.monotonic() - run.started,
        [
            w
            for _, w in run.timeline
            if w.startswith(("SIG", "cut", "postgres", "join", "sim", "flood", "faulty"))
        ],
        checks,
    )
    summary.show()
    failed = [c for c in checks if not c.ok]
    assert not failed, "\n".join(
        [f"{run.name}: {len(failed)} of {len(checks)} checks failed"]
        + [f"- {c.name}: {c.evidence}" for c in failed]
    )
    return summary


async def _database_checks(run: Run, db: asyncpg.Connection) -> list[Check]:
    checks: list[Check] = []
    rows = await db.fetch(
        "SELECT report_id, duplicates FROM intake.reports WHERE source = $1", run.source
    )
    stored = Counter(r["report_id"] for r in rows)
    wanted = {r["report_id"] for r in run.reports}
    lost = wanted - set(stored)
    checks.append(
        Check(
            "no report lost",
            not lost,
            f"{len(wanted) - len(lost)}/{len(wanted)} stored; lost e.g. {sorted(lost)[:5]}",
        )
    )
    extra = set(stored) - wanted
    twice = [k for k, n in stored.items() if n > 1]
    case_rows = await db.fetchval(
        "SELECT count(*) - count(DISTINCT (source, report_id)) FROM intake.reports"
    )
    dups = sum(r["duplicates"] for r in rows)
    dup_ok = dups == run.duplicates if not run.resent else dups >= run.duplicates
    checks.append(
        Check(
            "no duplicate case; repeats counted once",
            not extra and not twice and case_rows == 0 and dup_ok,
            f"unexpected {len(extra)}, twice {len(twice)}, duplicates counted {dups} "
            f"(sent {run.duplicates}, load retries {run.resent})",
        )
    )

    escalations = await db.fetch("SELECT * FROM escalator.escalations")
    links = await db.fetch(
        """SELECT l.*, e.state, e.platform FROM escalator.escalation_cases l
           JOIN escalator.escalations e USING (escalation_id)"""
    )
    by_state = Counter(e["state"] for e in escalations)
    not_final = [e for e in escalations if e["state"] not in TERMINAL]
    manual_no_reason = [e for e in escalations if e["state"] == "needs_manual" and not e["reason"]]
    decided_no_ref = [
        e for e in escalations if e["state"] == "decided" and not e["platform_reference"]
    ]
    linked = Counter(link["escalation_id"] for link in links)
    unlinked = [e for e in escalations if linked[e["escalation_id"]] != e["linked_cases"]]
    unannounced = await db.fetchval(
        """SELECT count(*) FROM escalator.escalations e WHERE NOT EXISTS (
               SELECT 1 FROM escalator.escalation_states s
               WHERE s.escalation_id = e.escalation_id AND s.state = e.state)"""
    )
    unfinished = await db.fetchval(
        "SELECT count(*) FROM escalator.attempts WHERE finished_at IS NULL OR result IS NULL"
    )
    checks.append(
        Check(
            "every URL of every case final or waiting for a person with a reason",
            len(links) == run.urls
            and len(escalations) <= len(links)
            and not not_final
            and not manual_no_reason
            and not decided_no_ref
            and not unlinked
            and unannounced == 0,
            f"{len(links)}/{run.urls} case URLs, {len(escalations)} escalations "
            f"{dict(by_state)}; wrong: reason {len(manual_no_reason)}, reference "
            f"{len(decided_no_ref)}, links {len(unlinked)}, unannounced {unannounced}",
        )
    )
    checks.append(
        Check("every attempt ended with a result", unfinished == 0, f"{unfinished} open attempts")
    )

    sim: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=10.0) as client:
        try:
            sim = (await client.get(f"{run.stack.url('simulator')}/_sim/stats")).json()
        except httpx.HTTPError as exc:
            sim = {"error": str(exc)}
    repeated = sim.get("repeated_client_references", {"unknown": "no stats"})
    with_ref = sum(1 for e in escalations if e["platform_reference"])
    distinct = sim.get("distinct_client_references", -1)
    same_content = len(escalations) - len(
        {(e["route"], e["platform"], e["normalized_url"]) for e in escalations}
    )
    checks.append(
        Check(
            "at most one notice per content per platform",
            repeated == {}
            and sim.get("submissions") == distinct
            and with_ref <= distinct
            and same_content == 0,
            f"submissions {sim.get('submissions')}, distinct references {distinct}, "
            f"repeated {_first(repeated)} ({len(repeated)}), "
            f"escalations holding a reference {with_ref}, "
            f"escalations of content already escalated {same_content}",
        )
    )

    checks.append(await _totals_check(run, db, escalations, links))
    return checks


def _first(repeated: Any) -> Any:
    return dict(list(repeated.items())[:5]) if isinstance(repeated, dict) else repeated


async def _totals_check(
    run: Run,
    db: asyncpg.Connection,
    escalations: list[asyncpg.Record],
    links: list[asyncpg.Record],
) -> Check:
    totals = await _totals(run)
    if totals is None:
        return Check("/v1/totals equal the database", False, "metrics did not answer")
    decided = [e for e in escalations if e["state"] == "decided"]
    takedowns = sum(e["decision"] in TAKEDOWNS for e in decided)
    harm = Counter(
        h for _, types in {(r["case_id"], tuple(r["harm_types"])) for r in links} for h in types
    )
    per_platform = Counter(p for _, p in {(r["case_id"], r["platform"]) for r in links})
    want: dict[str, Any] = {
        "cases": await db.fetchval("SELECT count(*) FROM intake.reports"),
        "urls": len(links),
        "url_reports.by_state": dict(Counter(r["state"] for r in links)),
        "urls_escalated": await db.fetchval(
            """SELECT count(DISTINCT escalation_id) FROM escalator.escalation_states
               WHERE state IN ('submitted', 'decided')"""
        ),
        "escalations.total": len(escalations),
        "escalations.by_state": dict(Counter(e["state"] for e in escalations)),
        "decisions": dict(Counter(e["decision"] for e in decided)),
        "takedowns": takedowns,
        "cases_by_platform": dict(per_platform),
        "cases_by_harm_type": dict(harm),
        "reports_rejected": await db.fetchval("SELECT count(*) FROM intake.rejections"),
    }
    got: dict[str, Any] = {
        "cases": totals.get("cases"),
        "urls": totals.get("urls"),
        "url_reports.by_state": (totals.get("url_reports") or {}).get("by_state"),
        "urls_escalated": totals.get("urls_escalated"),
        "escalations.total": totals.get("escalations", {}).get("total"),
        "escalations.by_state": totals.get("escalations", {}).get("by_state"),
        "decisions": totals.get("decisions"),
        "takedowns": totals.get("takedowns"),
        "cases_by_platform": {
            p: v["cases"] for p, v in (totals.get("cases_by_platform") or {}).items()
        },
        "cases_by_harm_type": totals.get("cases_by_harm_type"),
        "reports_rejected": totals.get("reports_rejected"),
    }
    differ = {k: {"metrics": got[k], "database": want[k]} for k in want if got[k] != want[k]}
    return Check(
        "/v1/totals equal the database",
        not differ,
        json.dumps(differ)[:600] if differ else f"{len(want)} figures equal",
    )
