"""Refusal logging that a flood cannot turn into a flood of log lines.

Logging every refused request one line each let a 30 s flood write 37 MB of log: an attacker
could fill the disk and bury the lines that matter. Here, for each refusal reason, the first
`per_reason` refusals of a window are logged one line each (an operator still sees examples, with
their fields), the rest are only counted, and when the window is over one summary line gives the
count. So whatever the request rate, a reason writes at most `per_reason + 1` lines per window,
and at most `max_reasons` reasons are tracked (any further reason is counted as "other"); field
values are cut to `max_field_chars`, so a line's size is bounded too.

Time is passed in (`now`), nothing here reads a clock: the servicer passes its clock's reading,
and calls `flush(now)` from a periodic task so a window's summary appears even when the flood
stops (otherwise it appears with the next refusal of that reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from structlog.typing import FilteringBoundLogger

from common.logsetup import get_logger

OTHER_REASON: Final = "other"


@dataclass(slots=True)
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class RefusalLog:
    """Rate-limited, summarised refusal lines, per reason and per window."""

    __slots__ = (
        "_event",
        "_logger",
        "_max_field_chars",
        "_max_reasons",
        "_per_reason",
        "_window",
        "_windows",
        "totals",
    )

    def __init__(
        self,
        logger: FilteringBoundLogger | None = None,
        *,
        per_reason: int = 10,
        window: float = 60.0,
        max_reasons: int = 64,
        max_field_chars: int = 256,
        event: str = "request_refused",
    ) -> None:
        if per_reason < 0 or window <= 0 or max_reasons < 1 or max_field_chars < 16:
            raise ValueError("per_reason >= 0, window > 0, max_reasons >= 1, max_field_chars >= 16")
        self._logger = logger
        self._per_reason = per_reason
        self._window = window
        self._max_reasons = max_reasons
        self._max_field_chars = max_field_chars
        self._event = event
        self._windows: dict[str, _Window] = {}
        # Every refusal ever seen, by reason: for metrics and tests. Its keys are the reasons
        # ever seen, at most max_reasons of them (then "other"), which bounds the windows too.
        self.totals: dict[str, int] = {}

    def refused(self, reason: str, now: float, **fields: object) -> bool:
        """Record one refusal; log it if it is among the first of its window. True if logged."""
        if reason not in self.totals and len(self.totals) >= self._max_reasons:
            fields["original_reason"] = reason
            reason = OTHER_REASON
        self.totals[reason] = self.totals.get(reason, 0) + 1
        window = self._windows.get(reason)
        if window is None or now >= window.start + self._window:
            if window is not None:
                self._summarise(reason, window)
            window = self._windows[reason] = _Window(now)
        if window.logged >= self._per_reason:
            window.suppressed += 1
            return False
        window.logged += 1
        self._log().warning(self._event, reason=reason, **self._cut(fields))
        return True

    def flush(self, now: float) -> None:
        """Write the summary of every window that has ended; forget those windows."""
        for reason, window in list(self._windows.items()):
            if now >= window.start + self._window:
                self._summarise(reason, window)
                del self._windows[reason]

    def _summarise(self, reason: str, window: _Window) -> None:
        if window.suppressed:
            self._log().warning(
                f"{self._event}_summary",
                reason=reason,
                count=window.logged + window.suppressed,
                not_logged=window.suppressed,
                window_start=window.start,
                window_seconds=self._window,
            )

    def _cut(self, fields: dict[str, object]) -> dict[str, object]:
        limit = self._max_field_chars
        cut: dict[str, object] = {}
        for name, value in fields.items():
            shown = value.hex() if isinstance(value, bytes) else value
            if isinstance(shown, str) and len(shown) > limit:
                shown = f"{shown[:limit]}... ({len(shown)} characters, cut)"
            cut[name] = shown
        return cut

    def _log(self) -> FilteringBoundLogger:
        # Looked up at call time, so a test's or a process's later logging setup applies.
        return self._logger if self._logger is not None else get_logger(component="refusals")
