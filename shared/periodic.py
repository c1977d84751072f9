"""One way to run background work every few seconds: start, wake early, stop without hanging.

Outbox relays, the orders reconciler, audit checkpointing, the access service's key re-reading,
the data service's revocation polling and budget reports all run a step, wait, and run it
again; :class:`Periodic` is that loop, written once:

- a step that raises is logged and retried after the interval (the loop never dies of it);
- a step that returns ``True`` says "more is waiting": it runs again at once;
- :meth:`Periodic.wake` ends the current wait (or, while the step runs, the next one);
- :meth:`Periodic.stop` cancels until the task has really ended: on Python 3.11 a cancellation
  that races with a wake-up can be swallowed, so one ``cancel()`` is not enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

logger = logging.getLogger("sluice.periodic")

Step = Callable[[], Awaitable[object]]


class Periodic:
    def __init__(self, name: str, step: Step, interval: float, *, run_at_start: bool = True) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        #: False: wait one interval (or a wake-up) before the first step.
        self.run_at_start = run_at_start
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Run the step soon instead of at the end of the interval."""
        self._wake.set()

    async def _wait(self) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # races with the wake-up, and shutdown would hang.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                await self._wake.wait()

    async def run(self) -> None:
        """The loop itself (until cancelled)."""
        if not self.run_at_start:
            await self._wait()
        while True:
            self._wake.clear()  # a wake-up during the step ends the next wait at once
            more = False
            try:
                more = await self.step() is True
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s failed; retrying in %.1f s", self.name, self.interval)
            if not more:
                await self._wait()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Periodic]:
        """Run for the lifetime of the block (a lifespan step's body)."""
        self.start()
        try:
            yield self
        finally:
            await self.stop()


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has really ended (cancel again if a cancellation was
    absorbed somewhere inside it); log what it died of, if anything."""
    while not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s failed: %r", task.get_name(), task.exception())
