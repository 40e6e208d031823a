"""`helpline url explain`, run as a practitioner runs it: one JSON line per URL with what the
triage service understands of it, exit 0 only when every URL was read as a URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpline_triage.links import understand

HELPLINE = Path(sys.executable).with_name("helpline")
KEYS = {"url", "is_url", "platform", "kind", "canonical_url", "short_link", "reason"}


def explain(*args: str, stdin: str = "") -> tuple[int, list[dict[str, Any]], str]:
    command = [str(HELPLINE)] if HELPLINE.exists() else [sys.executable, "-m", "helpline_cli.main"]
    done = subprocess.run(
        [*command, "url", "explain", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, lines, done.stderr


def test_each_url_gets_one_json_line_with_what_triage_understands() -> None:
    urls = [
        "https://youtu.be/dQw4w9WgXcQ?si=abc",
        "https://twitter.com/Fake_Head/status/20?s=20",
        "https://vm.tiktok.com/ZMabc123/",
        "https://example.org/page?utm_source=x",
    ]

    code, lines, _ = explain(*urls)

    assert code == 0
    assert [line["url"] for line in lines] == urls
    assert all(set(line) == KEYS for line in lines)
    assert lines == [understand(url).to_json() for url in urls]
    assert [(x["platform"], x["kind"], x["canonical_url"]) for x in lines[:2]] == [
        ("youtube", "video", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
        ("x", "post", "https://x.com/i/status/20"),
    ]
    assert lines[2]["short_link"] is True
    assert "never fetches" in lines[2]["reason"]
    assert (lines[3]["platform"], lines[3]["reason"]) == (
        "unknown",
        "the host is not one of the known platforms' hosts",
    )


def test_a_value_that_is_not_a_url_says_why_and_fails_the_command() -> None:
    code, lines, _ = explain("https://discord.gg/AbCdEf", "ftp://tiktok.com/@fake_head")

    assert code == 1
    assert len(lines) == 2
    assert lines[0]["is_url"] is True
    assert lines[1]["is_url"] is False
    assert lines[1]["canonical_url"] is None
    assert lines[1]["reason"].startswith("cannot be read as a URL")
    assert "fake_head" not in lines[1]["reason"]


def test_a_dash_reads_one_url_per_line_from_stdin() -> None:
    code, lines, _ = explain(
        "-",
        stdin="https://instagr.am/p/C1a2B3c4D5e\n\nhttps://www.instagram.com/reel/C1a2B3c4D5e/\n",
    )

    assert code == 0
    assert [x["canonical_url"] for x in lines] == ["https://www.instagram.com/p/C1a2B3c4D5e"] * 2
    assert [x["kind"] for x in lines] == ["post", "video"]


def test_from_text_finds_the_urls_in_a_description() -> None:
    description = (
        "A fake account (tiktok.com/@fake_head) posted https://x.com/fake_head/status/20. "
        "Email head@tiktok.com if needed."
    )

    code, lines, _ = explain("--from-text", "-", stdin=description)

    assert code == 0
    assert [(x["url"], x["canonical_url"]) for x in lines] == [
        ("https://tiktok.com/@fake_head", "https://www.tiktok.com/@fake_head"),
        ("https://x.com/fake_head/status/20", "https://x.com/i/status/20"),
    ]


def test_text_without_urls_fails_and_says_so() -> None:
    code, lines, err = explain("--from-text", "nothing to see here")

    assert (code, lines) == (1, [])
    assert "no URLs" in err
