"""WorkLoop: wakes are never lost, errors back off without killing the loop, stop waits
for the step in hand."""

from __future__ import annotations

import asyncio
import time

from helpline_shared.loop import WorkLoop


async def test_a_wake_during_a_step_runs_the_next_step_at_once() -> None:
    calls: list[float] = []
    loop: WorkLoop

    async def step() -> bool:
        calls.append(time.monotonic())
        if len(calls) == 1:
            await asyncio.sleep(0.05)
            loop.wake()  # new work arrives while this step runs
        return False

    loop = WorkLoop("test", step, idle_s=10.0)
    loop.start()
    await asyncio.sleep(0.3)
    await loop.stop(1.0)
    assert len(calls) == 2
    assert calls[1] - calls[0] < 1.0  # not after the 10 s idle wait


async def test_errors_back_off_and_the_loop_survives() -> None:
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database down")
        return False

    loop = WorkLoop("test", step, idle_s=10.0)
    loop.start()
    await asyncio.sleep(1.5)  # first backoff is 1 s
    await loop.stop(1.0)
    assert calls == 2


async def test_stop_lets_the_step_in_hand_finish() -> None:
    finished = asyncio.Event()

    async def step() -> bool:
        await asyncio.sleep(0.2)
        finished.set()
        return True

    loop = WorkLoop("test", step, idle_s=10.0)
    loop.start()
    await asyncio.sleep(0.05)
    await loop.stop(5.0)
    assert finished.is_set()
