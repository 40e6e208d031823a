"""`helpline run <service>`: one service in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def _simulator(s: Settings) -> Any:
    from helpline_simulator.server import SimConfig, create_simulator

    return create_simulator(SimConfig.from_settings(s))


FACTORIES: dict[str, Callable[[Settings], Any]] = {
    "intake": _intake,
    "triage": _triage,
    "escalator": _escalator,
    "metrics": _metrics,
    "simulator": _simulator,
}


async def run_service(name: str, settings: Settings) -> None:
    app = FACTORIES[name](settings)
    await serve(app, settings, int(getattr(settings, f"{name}_port")))
