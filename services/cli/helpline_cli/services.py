"""`helpline run <service>`: one service in the foreground until SIGTERM or Ctrl-C.

A configuration the service refuses at start-up (an invalid setting or platform setting)
is printed as one line on stderr and the command exits 2, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from helpline_shared.service import serve
from helpline_shared.settings import Settings


def _intake(s: Settings) -> Any:
    from helpline_intake.app import create_app

    return create_app(s)


def _triage(s: Settings) -> Any:
    from helpline_triage.app import create_app

    return create_app(s)


def _escalator(s: Settings) -> Any:
    from helpline_escalator.app import create_app

    return create_app(s)


def _metrics(s: Settings) -> Any:
    from helpline_metrics.app import create_app

    return create_app(s)


def _casework(s: Settings) -> Any:
    from helpline_casework.app import create_app

    return create_app(s)


def _notify(s: Settings) -> Any:
    from helpline_notify.app import create_app

    return create_app(s)


def _simulator(s: Settings) -> Any:
    from helpline_simulator.server import SimConfig, create_simulator

    return create_simulator(SimConfig.from_settings(s))


FACTORIES: dict[str, Callable[[Settings], Any]] = {
    "intake": _intake,
    "triage": _triage,
    "escalator": _escalator,
    "metrics": _metrics,
    "casework": _casework,
    "notify": _notify,
    "simulator": _simulator,
}


def settings_problem(exc: ValidationError) -> str:
    """One line naming each invalid setting, its environment variable and what is wrong
    (never the value given: it may be a credential)."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        env = "HELPLINE_" + "__".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{field} ({env}): {error['msg']}")
    return "invalid settings: " + "; ".join(problems)


async def run_service(name: str, settings: Settings) -> int:
    """Serve until stopped (exit code 0); 2 when the service refuses its configuration."""
    try:
        app = FACTORIES[name](settings)
    except ValueError as exc:  # pydantic's ValidationError included
        problem = settings_problem(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"helpline run {name}: {problem}", file=sys.stderr)
        return 2
    await serve(app, settings, int(getattr(settings, f"{name}_port")))
    return 0
