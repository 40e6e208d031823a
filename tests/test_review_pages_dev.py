"""`helpline dev` as a new practitioner meets it, driven in headless Chromium without
JavaScript: the command run as `make dev` runs it (every service a process, on ports of its
own, the simulator's included; the embedded database it starts; short deadlines), its
`dev key:` line read from its output, a practitioner's key made in another shell with
`helpline keys create` and the database line dev printed, and Ctrl-C (SIGINT to the whole
process group) stopping it.

The issue's "Done when": a report whose URL no adapter takes passes its deadline, the
practitioner signs in with the dev key, finds it overdue in the queue, records the
platform's decision, and `GET /v1/totals` counts it. Beside it: a report for a platform the
simulator plays reaches the simulator wherever it listens, and the public form and the
practitioners' pages, served on one host as in dev, each keep their own CSRF cookie, so
having both open in one browser refuses neither's form.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpline_cli.infra import free_port, port_is_free
from helpline_cli.stack import SERVICES
from tests.dev_support import dev_process
from tests.helpers import keyed_client
from tests.test_e2e import wait_until
from tests.test_ui_casework import browser, check_accessible, screenshot, shots

pytestmark = pytest.mark.e2e

__all__ = ["browser", "shots"]  # module fixtures shared with the pages' own tests

DEADLINE_S = 3  # every urgency's decision deadline, so an escalation is soon overdue
EXPORT_LINE = re.compile(r"^  export HELPLINE_DATABASE_URL='([^']+)'$")


@dataclass
class Dev:
    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    env: dict[str, str]
    output: list[str] = field(default_factory=list)
    key: str = ""

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@pytest.fixture(scope="module")
async def dev(tmp_dir: Path) -> AsyncIterator[Dev]:
    # A broker asked for at a free local port, as one runs dev beside another broker that
    # holds 9092: dev starts its embedded one there (and its embedded database).
    servers = f"127.0.0.1:{free_port()}"
    ports = {s: free_port() for s in SERVICES}
    configured = (  # dev starts the database and finds the platforms itself
        "HELPLINE_DATABASE_URL",
        "HELPLINE_PLATFORM_BASE_URL",
        "HELPLINE_HOTLINE_BASE_URL",
        "HELPLINE_SESSION_SECRET",  # dev makes and keeps its own
    )
    env = {k: v for k, v in os.environ.items() if k not in configured}
    env.update(
        {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATA_DIR": str(tmp_dir / "review-dev-data"),
            "HELPLINE_SIMULATOR_LATENCY_MS": "5",
            "HELPLINE_SIMULATOR_DECISION_DELAY_MS": "600000",  # platforms decide late
            "HELPLINE_ESCALATION_STATUS_INTERVAL_S": "0.5",
            "HELPLINE_ESCALATION_POLL_INTERVAL_S": "0.2",
            "HELPLINE_DEADLINE_CRITICAL_S": str(DEADLINE_S),
            "HELPLINE_DEADLINE_HIGH_S": str(DEADLINE_S),
            "HELPLINE_DEADLINE_NORMAL_S": str(DEADLINE_S),
            "HELPLINE_DEADLINE_SCAN_INTERVAL_S": "0.5",
            **{f"HELPLINE_{s.upper()}_PORT": str(p) for s, p in ports.items()},
        }
    )
    async with dev_process(env) as started:
        yield Dev(started.proc, ports, env, started.output, started.key)


async def _practitioner_key(dev: Dev, name: str) -> str:
    """A practitioner's key made as README says, in another shell: `helpline keys create`
    with only the database line `helpline dev` printed added to the environment."""
    exports = [m.group(1) for line in dev.output if (m := EXPORT_LINE.match(line))]
    assert len(exports) == 1, dev.output
    shell = {k: v for k, v in os.environ.items() if k != "HELPLINE_DATABASE_URL"}
    made = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "helpline_cli.main",
        "keys",
        "create",
        "--scope",
        "practitioner",
        "--name",
        name,
        env={**shell, "HELPLINE_DATABASE_URL": exports[0]},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(made.communicate(), 60)
    assert made.returncode == 0, out.decode()
    key = out.decode().strip().splitlines()[-1]
    assert key.startswith("hk_"), out.decode()
    return key


async def _report(dev: Dev, url: str, description: str) -> uuid.UUID:
    tag = secrets.token_hex(4)
    async with keyed_client(dev.url("intake"), dev.key) as client:
        answer = await client.post(
            "/v1/reports",
            json={
                "schema_version": 1,
                "source": "dev",  # the dev key submits for source dev
                "report_id": f"review-dev-{tag}",
                "reporter": {"name": "Jo Bloggs", "email": f"jo.{tag}@school.example"},
                "organisation": "Oakfield Primary School",
                "description": description,
                "urls": [url],
            },
        )
    assert answer.status_code == 202, answer.text
    return uuid.UUID(answer.json()["case_id"])


async def _context(browser: Any) -> Any:
    """A fresh browser context without JavaScript, as the pages promise to work."""
    return await browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )


async def _sign_in(page: Any, dev: Dev, key: str) -> None:
    response = await page.goto(f"{dev.url('casework')}/")
    assert response.status == 200
    assert page.url.startswith(f"{dev.url('casework')}/signin")
    await page.fill("#key", key)
    async with page.expect_navigation():
        await page.press("#key", "Enter")  # the keyboard alone signs in
    assert page.url == f"{dev.url('casework')}/queue"


async def test_dev_prints_its_key_and_every_service_on_its_own_port(dev: Dev) -> None:
    text = "\n".join(dev.output)
    assert [line for line in dev.output if line.startswith("dev key:")] == [f"dev key: {dev.key}"]
    for service in SERVICES:
        assert dev.url(service) in text, service
    async with httpx.AsyncClient() as client:
        for service in SERVICES:
            assert (await client.get(f"{dev.url(service)}/health/ready")).status_code == 200


async def test_a_report_for_a_platform_reaches_the_simulator_on_its_own_port(dev: Dev) -> None:
    assert dev.ports["simulator"] != 8010  # not the default the escalator would otherwise use
    url = f"https://www.tiktok.com/@fake_head_{secrets.token_hex(3)}/video/7301234567890123456"
    case_id = await _report(dev, url, "A fake account impersonates our head teacher.")

    async def sent() -> tuple[bool, Any]:
        async with keyed_client(dev.url("casework"), dev.key) as client:
            answer = await client.get(f"/v1/cases/{case_id}")
        if answer.status_code != 200 or not answer.json()["escalations"]:
            return False, answer.text
        escalation = answer.json()["escalations"][0]
        return escalation["platform_reference"] is not None, escalation

    await wait_until(sent, 60, "the notice accepted by the simulated platform")
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{dev.url('simulator')}/_sim/stats")).json()
    assert stats["by_platform"].get("tiktok", 0) >= 1, stats


async def test_done_when_a_practitioner_records_an_overdue_outcome_and_totals_count_it(
    dev: Dev, browser: Any, shots: Path
) -> None:
    url = f"https://forum.school-gossip.example/thread/{secrets.token_hex(4)}"
    case_id = await _report(dev, url, "A forum thread names our deputy head with lies.")

    async def overdue() -> tuple[bool, Any]:
        async with keyed_client(dev.url("casework"), dev.key) as client:
            queue = (await client.get("/v1/queue")).json()
        mine = [i for i in queue if i["case_id"] == str(case_id)]
        return bool(mine) and mine[0]["overdue"], mine

    await wait_until(overdue, 90, "the escalation waiting for a person, overdue")

    async def totals() -> dict[str, Any]:
        async with keyed_client(dev.url("metrics"), dev.key) as client:
            answer = await client.get("/v1/totals")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    before = await totals()
    key = await _practitioner_key(dev, "Sam Practitioner")
    context = await _context(browser)
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await _sign_in(page, dev, key)
    assert "Sam Practitioner" in await page.inner_text("header")
    row = page.locator(f"table.queue tbody tr[data-case='{case_id}']")
    assert "Overdue" in await row.inner_text()
    await screenshot(page, shots, "review-dev-queue")
    async with page.expect_navigation():
        await row.locator("a").first.click()
    await check_accessible(page)

    form = "details:has(summary:text('The platform decided'))"
    await page.click(f"{form} summary")
    await page.select_option(f"{form} select[name=decision]", "removed")
    await page.fill(f"{form} textarea[name=note]", "The forum's moderator removed it by phone.")
    async with page.expect_navigation():
        await page.click(f"{form} button[type=submit]")
    assert "Recorded: the platform's decision." in await page.inner_text("#confirmation")
    await screenshot(page, shots, "review-dev-case")
    assert all(r.startswith(dev.url("casework")) for r in requested), requested
    await context.close()

    async def counted() -> tuple[bool, Any]:
        after = await totals()
        return after["manual_decisions"] == before["manual_decisions"] + 1, after

    await wait_until(counted, 60, "the totals counting the practitioner's decision")
    after = await totals()
    assert after["decisions"].get("removed", 0) == before["decisions"].get("removed", 0) + 1


async def test_a_late_platforms_escalation_reads_its_deadline_as_a_person_does(
    dev: Dev, browser: Any
) -> None:
    url = f"https://www.tiktok.com/@late_{secrets.token_hex(3)}/video/7301234567890123456"
    case_id = await _report(dev, url, "A fake account mocks our pupils by name.")

    async def breached() -> tuple[bool, Any]:
        async with keyed_client(dev.url("casework"), dev.key) as client:
            answer = await client.get(f"/v1/cases/{case_id}")
        if answer.status_code != 200 or not answer.json()["escalations"]:
            return False, answer.text
        escalation = answer.json()["escalations"][0]
        return "deadline" in (escalation["reason"] or ""), escalation

    await wait_until(breached, 60, "the notice past its deadline, the platform silent")
    context = await _context(browser)
    page = await context.new_page()
    await _sign_in(page, dev, dev.key)
    await page.goto(f"{dev.url('casework')}/cases/{case_id}")
    text = await page.locator("article.escalation").inner_text()
    assert "no decision by its deadline" in text, text
    assert re.search(r"deadline \(\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2} UTC\)", text), text
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}", text), text
    await context.close()


async def test_the_form_and_the_pages_open_side_by_side_refuse_neither(
    dev: Dev, browser: Any
) -> None:
    url = f"https://forum.school-gossip.example/thread/{secrets.token_hex(4)}"
    case_id = await _report(dev, url, "Another forum thread names our deputy head.")

    async def queued() -> tuple[bool, Any]:
        async with keyed_client(dev.url("casework"), dev.key) as client:
            queue = (await client.get("/v1/queue")).json()
        return any(i["case_id"] == str(case_id) for i in queue), queue

    await wait_until(queued, 60, "the escalation waiting for a person")
    context = await _context(browser)
    cases = await context.new_page()
    await _sign_in(cases, dev, dev.key)
    await cases.goto(f"{dev.url('casework')}/cases/{case_id}")
    report = await context.new_page()  # the public form opened in another tab ...
    await report.goto(f"{dev.url('intake')}/report")
    await report.fill("#f-name", "Ann Lead")
    await report.fill("#f-email", "ann.lead@school.example")
    await report.fill("#f-description", "Pupils share a video mocking a teacher.")
    await report.fill("#f-urls", f"https://www.tiktok.com/@p{secrets.token_hex(3)}/video/1")
    await report.check("#f-consent-yes")

    form = "details:has(summary:text('Close as advice only'))"  # ... then the case's form
    await cases.click(f"{form} summary")
    await cases.fill(f"{form} textarea[name=note]", "Advised the school to keep evidence.")
    async with cases.expect_navigation():
        await cases.click(f"{form} button[type=submit]")
    assert "Recorded: closed as advice only." in await cases.inner_text("#confirmation")

    await cases.goto(f"{dev.url('casework')}/queue")  # a casework page between, then send
    async with report.expect_navigation():
        await report.click("button[type=submit]")
    assert await report.inner_text("h1") == "Report received"
    await context.close()


async def test_ctrl_c_stops_every_service(dev: Dev) -> None:
    os.killpg(dev.proc.pid, signal.SIGINT)
    code = await asyncio.wait_for(dev.proc.wait(), 90)
    await asyncio.sleep(0.5)  # the reader takes the last lines
    assert code == 0, dev.output[-20:]
    assert "helpline dev: stopped." in dev.output
    for service, port in dev.ports.items():
        assert port_is_free("127.0.0.1", port), service
