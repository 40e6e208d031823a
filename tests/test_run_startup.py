"""`helpline run` refuses an invalid configuration at start-up with one clear line on
stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HELPLINE = Path(sys.executable).with_name("helpline")


def run_escalator(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    # Never reached: the configuration is refused before any connection is made.
    clean["HELPLINE_DATABASE_URL"] = "postgresql://helpline:unused@127.0.0.1:1/helpline"
    clean.update(env)
    return subprocess.run(
        [str(HELPLINE), "run", "escalator"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S": "-1"},
            "HELPLINE_PLATFORMS__TIKTOK__RATE_PER_S",
        ),
        (
            {"HELPLINE_ESCALATION_MAX_ATTEMPTS": "many"},
            "HELPLINE_ESCALATION_MAX_ATTEMPTS",
        ),
    ],
)
def test_an_invalid_setting_is_one_line_and_exit_2(env: dict[str, str], says: str) -> None:
    done = run_escalator(**env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("helpline")
    assert says in lines[0]
    assert "many" not in lines[0]  # what is wrong, not the value given
