"""`helpline dev` and its mail catcher, as a developer meets them: dev run as `make dev` runs
it (every service a process, the embedded broker and database) with the catcher's usual
port taken by something else, so the catcher moves to a free one and the services send there;
a report with an email address then produces a receipt that `helpline mail list` and
`helpline mail show latest` (run from another shell, as README says) read, whose status link
opens the case's page on notify; Ctrl-C stops the catcher with the rest."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from helpline_cli.infra import free_port, port_is_free
from helpline_cli.stack import SERVICES
from helpline_shared.events import case_reference
from tests.dev_support import dev_process
from tests.helpers import keyed_client
from tests.test_e2e import wait_until

pytestmark = pytest.mark.e2e

MAIL_LINE = re.compile(r"^mail catcher smtp://127\.0\.0\.1:(\d+) \(helpline mail list\)$")


@dataclass
class Dev:
    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    env: dict[str, str]
    taken: int
    output: list[str] = field(default_factory=list)
    key: str = ""

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def helpline(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command in another shell: dev's environment (its data directory) alone."""
        return subprocess.run(
            [sys.executable, "-m", "helpline_cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
async def dev(tmp_dir: Path) -> AsyncIterator[Dev]:
    ports = {s: free_port() for s in SERVICES}
    configured = (  # dev starts the database, finds the platforms, sends mail to its catcher
        "HELPLINE_DATABASE_URL",
        "HELPLINE_PLATFORM_BASE_URL",
        "HELPLINE_HOTLINE_BASE_URL",
        "HELPLINE_SESSION_SECRET",
        "HELPLINE_SMTP_HOST",
        "HELPLINE_SMTP_PORT",
        "HELPLINE_STATUS_BASE_URL",
    )
    env = {k: v for k, v in os.environ.items() if k not in configured}
    holder = socket.socket()  # something else already listens on the catcher's port
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    env.update(
        {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "HELPLINE_DATA_DIR": str(tmp_dir / "mail-dev-data"),
            "HELPLINE_SIMULATOR_LATENCY_MS": "5",
            "HELPLINE_MAIL_CATCHER_SMTP_PORT": str(taken),
            **{f"HELPLINE_{s.upper()}_PORT": str(p) for s, p in ports.items()},
        }
    )
    try:
        async with dev_process(env) as started:
            yield Dev(started.proc, ports, env, taken, started.output, started.key)
    finally:
        holder.close()


def _catcher_port(dev: Dev) -> int:
    found = [int(m.group(1)) for line in dev.output if (m := MAIL_LINE.match(line))]
    assert len(found) == 1, dev.output
    return found[0]


async def test_dev_catches_the_receipt_and_its_link_opens_the_case(dev: Dev) -> None:
    port = _catcher_port(dev)
    assert port != dev.taken  # the usual port was taken: a free one instead
    assert not port_is_free("127.0.0.1", port)  # and the catcher listens there

    tag = secrets.token_hex(4)
    address = f"dsl.{tag}@oakfield-school.example"
    async with keyed_client(dev.url("intake"), dev.key) as client:
        answer = await client.post(
            "/v1/reports",
            json={
                "schema_version": 1,
                "source": "dev",  # the dev key submits for source dev
                "report_id": f"mail-dev-{tag}",
                "reporter": {"name": "Jo Bloggs", "email": address},
                "organisation": "Oakfield Primary School",
                "description": "A fake account impersonates our head teacher.",
                "urls": ["https://www.tiktok.com/@fake_head/video/7301234567890123456"],
            },
        )
    assert answer.status_code == 202, answer.text
    reference = case_reference(uuid.UUID(answer.json()["case_id"]))

    def mine() -> list[str]:
        return [
            line for line in dev.helpline("mail", "list").stdout.splitlines() if address in line
        ]

    async def both() -> tuple[bool, list[str]]:
        lines = await asyncio.to_thread(mine)
        return len(lines) >= 2, lines

    # The simulated platform decides at once: the receipt, then the outcome email.
    await wait_until(
        both, 90, f"a receipt and an outcome email in helpline mail list ({dev.output})"
    )
    await asyncio.sleep(2)  # nothing more comes: one of each
    receipt, outcome = mine()
    assert "received" in receipt, receipt
    assert "outcome" in outcome, outcome
    for line in (receipt, outcome):
        assert reference in line  # each subject names the case

    shown = dev.helpline("mail", "show", receipt.split()[0])
    assert shown.returncode == 0, shown.stderr
    assert reference in shown.stdout
    links = re.findall(r"http://127\.0\.0\.1:(\d+)(/status/\S+)", shown.stdout)
    assert len(links) == 1, shown.stdout
    link_port, path = links[0]
    assert int(link_port) == dev.ports["notify"]  # the link opens notify on this machine
    async with httpx.AsyncClient(base_url=dev.url("notify")) as client:
        page = await client.get(path)
    assert page.status_code == 200, page.text
    assert reference in page.text
    assert address not in page.text  # the page shows the case, not the reporter

    latest = dev.helpline("mail", "show", "latest")
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout.splitlines()[0] == outcome
    assert reference in latest.stdout


async def test_a_report_through_the_public_form_gets_a_receipt_whose_link_shows_its_outcome(
    dev: Dev,
) -> None:
    """The issue's "done when": a person files through the public form (no key), the receipt
    arrives in dev's mail catcher, and its link shows the case's progress to its outcome."""
    tag = secrets.token_hex(4)
    address = f"head.{tag}@oakfield-school.example"
    async with httpx.AsyncClient(base_url=dev.url("intake"), timeout=30) as browser:
        form = await browser.get("/report")
        assert form.status_code == 200, form.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        report_id = re.search(r'name="report_id" value="([^"]+)"', form.text)
        assert token is not None
        assert report_id is not None
        thanks = await browser.post(
            "/report",
            data={
                "csrf_token": token.group(1),
                "report_id": report_id.group(1),
                "name": "Jo Bloggs",
                "email": address,
                "role": "designated safeguarding lead",
                "organisation": "Oakfield Primary School",
                "description": "A fake account impersonates our head teacher.",
                "urls": f"https://www.tiktok.com/@fake_head_{tag}/video/7301234567890123456",
                "child_affected": "no",
                "consent": "yes",
            },
        )
    assert thanks.status_code == 202, thanks.text
    shown_reference = re.search(r'id="case-reference">([^<]+)<', thanks.text)
    assert shown_reference is not None, thanks.text
    reference = shown_reference.group(1).strip()

    def mine() -> list[str]:
        return [
            line for line in dev.helpline("mail", "list").stdout.splitlines() if address in line
        ]

    async def both() -> tuple[bool, list[str]]:
        lines = await asyncio.to_thread(mine)
        return len(lines) >= 2, lines

    await wait_until(both, 90, f"a receipt and an outcome email for the form's report ({mine()})")
    receipt, outcome = mine()
    assert reference in receipt
    assert reference in outcome
    shown = dev.helpline("mail", "show", receipt.split()[0])
    links = re.findall(r"http://127\.0\.0\.1:\d+(/status/\S+)", shown.stdout)
    assert len(links) == 1, shown.stdout
    async with httpx.AsyncClient(base_url=dev.url("notify")) as client:
        page = await client.get(links[0])
    assert page.status_code == 200, page.text
    assert reference in page.text
    assert "TikTok" in page.text  # each URL's platform and its outcome in plain words
    assert address not in page.text
