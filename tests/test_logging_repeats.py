"""A warning repeated during an outage becomes one line per interval with a count."""

from __future__ import annotations

import logging

from helpline_shared.logging import RepeatFilter


def test_a_repeated_connection_warning_is_one_line_per_interval_with_a_count() -> None:
    now = [0.0]
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    log = logging.getLogger("aiokafka.test-repeats")
    log.propagate = False
    handler = Keep()
    handler.addFilter(RepeatFilter(interval_s=10, clock=lambda: now[0]))
    log.addHandler(handler)
    try:
        for i in range(450):  # ten seconds of an outage at 45 lines a second
            now[0] = i / 45
            log.warning("Unable connect to node with id %s: %s", 1, "refused")
        now[0] = 10.5
        log.warning("Unable connect to node with id %s: %s", 1, "refused")
        log.warning("another warning")
    finally:
        log.removeHandler(handler)
    assert kept == [
        "Unable connect to node with id 1: refused",
        "Unable connect to node with id 1: refused (repeated 449 more times in 10 s)",
        "another warning",
    ]
