"""The background task that closes rounds at their deadline, not when the next report happens by.

It sleeps exactly until the book's next deadline (`Book.next_deadline`: minute + 60 +
`round_deadline`, or a complete round's candle close) and wakes early only when a submission
changed the book (a new round may be due sooner); no polling. Started by `serve`/`build_server`
users through `start`, stopped with `stop` on shutdown; a failing listener is logged and the
clock keeps going, so one bad subscriber cannot stop rounds from closing.
"""

from __future__ import annotations

import asyncio
import contextlib

from aggregator.service import OracleServicer
from common.logsetup import get_logger
from common.timeutil import Clock

_log = get_logger(service="aggregator")

# Sleeping at most this long before looking again bounds the effect of a wall-clock jump.
_MAX_SLEEP = 60.0


class RoundClock:
    """Closes the servicer's due rounds at their deadlines."""

    def __init__(self, servicer: OracleServicer, clock: Clock) -> None:
        self._servicer = servicer
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="round_clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        changed = self._servicer.book_changed
        while True:
            changed.clear()
            try:
                await self._servicer.close_due()
            except Exception:  # noqa: BLE001 (logged; the next deadline must still close)
                _log.exception("round_clock_failed")
            deadline = self._servicer.book.next_deadline()
            delay = _MAX_SLEEP if deadline is None else deadline - self._clock()
            if delay <= 0:
                # Due already (a listener was slow): yield once, then close it.
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(delay, _MAX_SLEEP))
