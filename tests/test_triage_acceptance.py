"""Triage tried as outsiders would: descriptions the rules were not written on, URL forms a
tester would reach for first, and the equivalences a practitioner expects.

`triage_fresh_cases.jsonl` holds descriptions written after the rules and the labelled set,
as school staff and pupils would write them (slang, leet, accents, French, negations), and
labelled by the policy in `EVALSET.md`. A risk to life or a child's sexual imagery is never
missed on them, and they meet the same aims as the labelled set.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from helpline_triage.evaluate import CRITICAL, LabelledCase, evaluate, facts_of, load_set
from helpline_triage.links import extract_urls, understand
from helpline_triage.rules import RuleSet

RULES = RuleSet.load()
RULES_FILE = Path(str(resources.files("helpline_triage") / "rules.json"))
HELPLINE = str(Path(sys.executable).with_name("helpline"))
FRESH = load_set(Path(__file__).with_name("triage_fresh_cases.jsonl"))
CRITICAL_CASES = [c for c in FRESH if set(c.harm_types) & set(CRITICAL)]


def test_fresh_set_has_every_harm_type_and_many_critical_cases() -> None:
    seen = {h for c in FRESH for h in c.harm_types}
    assert seen == set(RULES.data["harm_types"])
    assert len(FRESH) >= 100
    assert len(CRITICAL_CASES) >= 40


@pytest.mark.parametrize("case", CRITICAL_CASES, ids=[c.id for c in CRITICAL_CASES])
def test_a_critical_harm_is_never_missed_on_fresh_text(case: LabelledCase) -> None:
    got = RULES.classify(facts_of(case))
    missed = set(case.harm_types) & set(CRITICAL) - set(got.harm_types)
    assert not missed, (case.description, got.harm_types, got.matches)
    assert got.urgency == "critical"


def test_fresh_text_meets_the_critical_aims_and_nearly_the_overall_one() -> None:
    """On text the rules were not written on, critical recall meets its aim of 0.95 and
    micro-F1 stays near 0.9 (0.76 before rules 2026-11-26.5; 0.63 on the issue's held-back
    descriptions before issue 6)."""
    report = evaluate(RULES, FRESH)
    critical = [aim for aim in report.meets_aims() if not aim.startswith("micro")]
    assert critical == [], report.to_json()
    assert report.micro.f1 >= 0.88, report.to_json()
    # where the rules are unsure a person looks: a gold 'high' case is almost never 'normal'
    assert report.confusion["high"]["normal"] <= 1


def _broken(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _codes(data: dict[str, Any]) -> dict[str, str]:
    return data["harm_types"]["hate"]["reason_codes"]  # type: ignore[no-any-return]


def _first_rule(data: dict[str, Any]) -> dict[str, Any]:
    return data["harm_rules"][0]  # type: ignore[no-any-return]


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown harm type": (lambda d: _first_rule(d).update(harm_type="doxing"), '"harm_type"'),
    "duplicate id": (lambda d: d["harm_rules"][1].update(id=_first_rule(d)["id"]), '"id"'),
    "bad regex": (lambda d: _first_rule(d)["patterns"].append("(open"), '"patterns['),
    "empty pattern": (lambda d: _first_rule(d)["patterns"].append("x?"), '"patterns['),
    "no reason code": (
        lambda d: d["harm_types"]["hate"]["reason_codes"].pop("tiktok"),
        "reason_codes",
    ),
    "version a number": (lambda d: d.update(version=6), '"version"'),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_rules_check_refuses_a_broken_file_naming_rule_and_field(name: str, tmp_path: Path) -> None:
    change, field = BROKEN[name]
    path = _broken(tmp_path, change)
    done = subprocess.run(
        [HELPLINE, "rules", "check", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert field in said
    if name not in ("version a number", "no reason code"):
        assert f'rule "{json.loads(RULES_FILE.read_text())["harm_rules"][0]["id"]}"' in said


# Forms of one content a tester would try first: hosts, short links, mobile hosts, trackers,
# letter case, trailing slashes, fragments, http, default ports and escapes.
SAME_CONTENT: list[tuple[str, str, list[str]]] = [
    (
        "youtube",
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        [
            "https://youtu.be/dQw4w9WgXcQ?si=abc",
            "HTTP://M.YOUTUBE.COM:80/watch?feature=share&v=dQw4w9WgXcQ#t=10",
            "https://www.youtube.com:443/shorts/dQw4w9WgXcQ/",
            "https://www.youtube.com/%77atch?v=dQw4w9WgXcQ",
            "youtube.com/embed/dQw4w9WgXcQ",
        ],
    ),
    (
        "instagram",
        "https://www.instagram.com/p/CxYz123AbC",
        [
            "https://instagr.am/p/CxYz123AbC/",
            "https://instagram.com/reel/CxYz123AbC?igsh=abc&utm_source=ig_web_copy_link",
            "https://www.instagram.com/some_user/p/CxYz123AbC/#comments",
            "https://www.instagram.com/p/%43xYz123AbC",
        ],
    ),
    (
        "x",
        "https://x.com/i/status/1234567890123456789",
        [
            "https://twitter.com/SomeUser/status/1234567890123456789?s=20",
            "http://mobile.twitter.com/someuser/status/1234567890123456789/photo/1",
            "https://x.com/i/web/status/1234567890123456789",
        ],
    ),
    (
        "tiktok",
        "https://www.tiktok.com/@some.user",
        [
            "https://m.tiktok.com/@Some.User/?lang=en",
            "tiktok.com/@some.user",
            "https://www.tiktok.com/%40some.user",
        ],
    ),
    (
        "facebook",
        "https://www.facebook.com/profile.php?id=100012345678901",
        [
            "https://fb.com/profile.php?id=100012345678901&mibextid=abc",
            "https://m.facebook.com/100012345678901/",
        ],
    ),
    (
        "snapchat",
        "https://www.snapchat.com/add/some.user",
        [
            "https://story.snapchat.com/@Some.User",
            "https://snapchat.com/add/Some.User?share_id=abc&locale=en-GB",
            "https://www.snapchat.com/@some.user/",
        ],
    ),
    (
        "threads",
        "https://www.threads.com/t/C1aBcD2eFgH",
        [
            "https://www.threads.net/@some.user/post/C1aBcD2eFgH",
            "https://threads.com/@Some.User/post/C1aBcD2eFgH?xmt=abc",
        ],
    ),
    (
        "reddit",
        "https://www.reddit.com/comments/abc123",
        [
            "https://old.reddit.com/r/Schools/comments/abc123/some_title/",
            "https://redd.it/abc123",
            "https://www.reddit.com/r/schools/comments/abc123/?utm_source=share",
        ],
    ),
    (
        "discord",
        "https://discord.com/invite/abcDEF",
        ["https://discord.gg/abcDEF", "https://discordapp.com/invite/abcDEF?event=1"],
    ),
    (
        "whatsapp",
        "https://chat.whatsapp.com/AbCdEf123",
        ["https://chat.whatsapp.com/invite/AbCdEf123"],
    ),
    (
        "telegram",
        "https://t.me/somechannel",
        ["https://telegram.me/somechannel", "https://t.me/s/somechannel"],
    ),
    ("twitch", "https://www.twitch.tv/somestreamer", ["https://m.twitch.tv/SomeStreamer/"]),
    (
        "roblox",
        "https://www.roblox.com/games/123456",
        [
            "https://web.roblox.com/games/123456/Some-Game",
            "https://www.roblox.com/games/start?placeId=123456&launchData=abc",
        ],
    ),
    (
        "facebook",
        "https://www.facebook.com/groups/123/posts/456",
        [
            "https://m.facebook.com/groups/123/permalink/456/",
            "https://www.facebook.com/groups/123/?multi_permalinks=456&ref=share",
        ],
    ),
]


@pytest.mark.parametrize(
    ("platform", "canonical", "forms"), SAME_CONTENT, ids=[s[0] for s in SAME_CONTENT]
)
def test_one_content_written_many_ways_has_one_canonical_form(
    platform: str, canonical: str, forms: list[str]
) -> None:
    for form in [canonical, *forms]:
        info = understand(form)
        assert (info.platform, info.canonical_url) == (platform, canonical), form
        assert understand(canonical).canonical_url == canonical


def test_url_explain_prints_one_json_line_per_url_and_exit_one_for_a_non_url() -> None:
    args = [forms[0] for _, _, forms in SAME_CONTENT]
    done = subprocess.run(
        [HELPLINE, "url", "explain", *args, "javascript:alert(1)"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1
    assert [line["canonical_url"] for line in lines[:-1]] == [c for _, c, _ in SAME_CONTENT]
    assert lines[-1]["is_url"] is False
    assert lines[-1]["reason"]


HOSTILE = [
    "blackmail " + "a'" * 4995,  # a word and an apostrophe, over and over
    "£1 " * 3333,  # thousands of matches in one clause
    "not kill " * 1111,  # thousands of negated matches
]


def test_a_hostile_description_of_the_longest_allowed_size_classifies_in_time() -> None:
    script = (
        "import sys, time\n"
        "from helpline_triage.rules import RuleSet\n"
        "rules = RuleSet.load()\n"
        "for text in sys.stdin.read().split('\\0'):\n"
        "    start = time.perf_counter()\n"
        "    rules.classify(text)\n"
        "    print(time.perf_counter() - start)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input="\0".join(HOSTILE),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,  # a regular expression backtracking without end never returns
    )
    assert done.returncode == 0, done.stderr
    seconds = [float(line) for line in done.stdout.split()]
    assert len(seconds) == len(HOSTILE)
    assert max(seconds) < 0.5, seconds  # about 0.05 s each here; 1 s and more before


def test_a_link_pasted_before_an_ellipsis_or_with_a_short_code_is_understood() -> None:
    text = "He posted instagr.am/p/ABC/ and then reddit.com/r/SchoolGossip\u2026 last night"
    found = [understand(url) for url in extract_urls(text)]
    assert [(i.platform, i.kind, i.canonical_url) for i in found] == [
        ("instagram", "post", "https://www.instagram.com/p/ABC"),
        ("reddit", "group", "https://www.reddit.com/r/schoolgossip"),
    ]


@pytest.mark.parametrize(
    ("description", "harm_type"),
    [
        (
            "Someone has set up a Snapchat account with a Year 8 boy's name and photo.",
            "impersonation",
        ),
        ("There's a meme about her braces going round the Year 8 chat.", "bullying_harassment"),
    ],
)
def test_fresh_forms_of_impersonation_and_bullying(description: str, harm_type: str) -> None:
    assert harm_type in RULES.classify(description).harm_types


@pytest.mark.parametrize(
    "description",
    [
        "Comments say k\u200bys under her video.",  # a zero-width space hides the word
        "Her friend says she is sucidal.",  # misspelt
        "He said he will s*icide tonight.",  # starred out
        "she wants to commit s**cide",
    ],
)
def test_self_harm_hidden_by_invisible_characters_misspelling_or_stars_is_found(
    description: str,
) -> None:
    got = RULES.classify(description)
    assert "self_harm" in got.harm_types
    assert got.urgency == "critical"
