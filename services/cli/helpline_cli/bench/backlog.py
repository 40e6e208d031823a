"""A platform's backlog queued at once, and the escalator's memory sampled while it waits."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from helpline_cli.bench.machine import rss_mb


async def add_backlog(db: asyncpg.Connection, platform: str, n: int) -> None:
    """`n` new escalations of `platform`, due now, each linked to its own case: queued
    in one statement, as if that many reports had named the platform while it was down."""
    await db.execute(
        """
        WITH made AS (
            INSERT INTO escalator.escalations
                (escalation_id, case_id, url, normalized_url, platform, route, harm_types,
                 urgency, received_at, state)
            SELECT gen_random_uuid(), gen_random_uuid(), u, u, $1, 'platform',
                   ARRAY['bullying_harassment'], 'normal', now(), 'queued'
            FROM (SELECT 'https://www.' || $1 || '.com/@backlog/video/' || g AS u
                  FROM generate_series(1, $2) g) urls
            RETURNING escalation_id, case_id, url, harm_types, urgency, received_at
        )
        INSERT INTO escalator.escalation_cases
            (escalation_id, case_id, url_id, url, harm_types, urgency, received_at)
        SELECT escalation_id, case_id, escalation_id, url, harm_types, urgency, received_at
        FROM made
        """,
        platform,
        n,
    )


class RssSampler:
    """The resident set size of one process, sampled every `every_s`, kept as the peak of
    each labelled stretch (`mark` starts a new one)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self._pid = pid
        self._every_s = every_s
        self._label = "start"
        self._peaks: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, label: str) -> None:
        self._label = label
        self._sample()

    def peak(self, label: str) -> float:
        return self._peaks.get(label, float("nan"))

    def _sample(self) -> None:
        with contextlib.suppress(OSError):
            mb = rss_mb(self._pid)
            self._peaks[self._label] = max(self._peaks.get(self._label, 0.0), mb)

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._every_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
