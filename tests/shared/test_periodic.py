"""shared.periodic.Periodic: runs its step, wakes early, survives failures, stops cleanly."""

from __future__ import annotations

import asyncio

from shared.periodic import Periodic


async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_wake_up_runs_the_step_before_the_interval_ends() -> None:
    runs: list[int] = []

    async def step() -> None:
        runs.append(1)

    loop = Periodic("test", step, interval=3600, run_at_start=False)
    async with loop.running():
        await asyncio.sleep(0)
        assert runs == []  # waits first
        loop.wake()
        await until(lambda: len(runs) == 1, "the woken step")
        loop.wake()
        await until(lambda: len(runs) == 2, "the second woken step")


async def test_a_failing_step_is_retried_and_more_work_runs_at_once() -> None:
    calls: list[str] = []

    async def step() -> bool:
        calls.append("x")
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        return len(calls) < 4  # "more is waiting" twice, then done

    loop = Periodic("test", step, interval=3600)
    async with loop.running():
        await until(lambda: len(calls) == 1, "the first run")
        loop.wake()  # after a failure the loop waits for the interval, or a wake-up
        await until(lambda: len(calls) == 4, "the runs that said more was waiting")


async def test_stop_ends_a_step_that_swallows_one_cancellation() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # swallowed once (as a racing wait_for could), then waits again
        await asyncio.sleep(3600)

    loop = Periodic("stubborn", stubborn, interval=3600)
    loop.start()
    await started.wait()
    await loop.stop()  # returns: cancelled again until the task ended
