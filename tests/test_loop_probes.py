"""WorkLoop's pause after a failure: an outage of a dependency ends it as soon as the
probes answer; any other failure is backed off in full (no retry storm on a bug)."""

from __future__ import annotations

import asyncio

from helpline_shared.loop import WorkLoop

RUN_S = 1.8  # the pauses after failures 1 and 2 are 1 s and 2 s


async def attempts(error: Exception, answering: bool) -> int:
    count = 0

    async def step() -> bool:
        nonlocal count
        count += 1
        raise error

    async def probe() -> bool:
        return answering

    loop = WorkLoop("probes-test", step, idle_s=1.0, probes=[probe])
    loop.start()
    await asyncio.sleep(RUN_S)
    await loop.stop(1.0)
    return count


async def test_an_outage_pause_ends_when_the_dependency_answers() -> None:
    # Probed every 0.25 s: many attempts where sleeping the pauses out would make two.
    assert await attempts(ConnectionRefusedError("database down"), answering=True) >= 4


async def test_an_outage_pause_is_slept_out_while_the_dependency_is_silent() -> None:
    assert await attempts(ConnectionRefusedError("database down"), answering=False) <= 2


async def test_a_failure_that_is_not_an_outage_is_backed_off_in_full() -> None:
    assert await attempts(ValueError("a bug"), answering=True) <= 2
