"""A background loop that repeats a unit of work, sleeps when idle, backs off on errors.

Used by the outbox relay and the escalator's platform workers. `step()` returns whether
there may be more to do at once; otherwise the loop waits until woken or `idle_s` passes.
An exception is logged and retried after a growing pause (never kills the loop);
cancellation stops it. When the exception is an outage of a dependency (the database or the
broker unreachable) and the loop has `probes` for them, the pause ends as soon as every
probe answers again (asked every `PROBE_INTERVAL_S`) instead of being slept out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from helpline_shared.consumer import PROBE_INTERVAL_S, is_infrastructure
from helpline_shared.logging import get_logger


class WorkLoop:
    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[bool]],
        *,
        idle_s: float,
        max_backoff_s: float = 30.0,
        probes: Sequence[Callable[[], Awaitable[bool]]] = (),
    ) -> None:
        self.name = name
        self._probes = tuple(probes)
        self._step = step
        self._idle_s = idle_s
        self._max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger(f"helpline.loop.{name}")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()  # before the step: a wake during the step is not lost
            try:
                more = await self._step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._log.exception("step failed; retrying", failures=failures)
                pause = min(self._max_backoff_s, 0.5 * 2**failures)
                await self._back_off(pause, until_reachable=is_infrastructure(exc))
                continue
            if more or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_s)

    async def _back_off(self, pause: float, *, until_reachable: bool) -> None:
        """Sleeps `pause`; after an outage, only until every probe answers again."""
        if not (until_reachable and self._probes):
            await asyncio.sleep(pause)
            return
        clock = asyncio.get_running_loop().time
        deadline = clock() + pause
        while not self._stopping and clock() < deadline:
            await asyncio.sleep(max(0.0, min(PROBE_INTERVAL_S, deadline - clock())))
            if await self._answering():
                return

    async def _answering(self) -> bool:
        for probe in self._probes:
            try:
                if not await asyncio.wait_for(probe(), 1.0):
                    return False
            except Exception:
                return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, timeout_s: float) -> None:
        """Let the step in hand finish (up to `timeout_s`), then stop; cancel it if late."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        _, pending = await asyncio.wait([task], timeout=timeout_s)
        for late in pending:
            late.cancel()
        await asyncio.gather(task, return_exceptions=True)
