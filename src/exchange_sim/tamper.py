"""The `tamper` fault: a venue's own candle rows, damaged the way a hostile or broken venue would.

Each venue builds its rows in its real format and hands them here with its `RowFields` (which
column holds the time, the prices) before encoding, so a tampered answer is still the venue's own
format with exactly one thing wrong. Operations:

- `set`: replace one field (`field`: time, open, high, low or close) with a JSON `value`
  (a string "NaN", a number -5, true, null, a list ...) or with `literal` text written verbatim
  (`NaN`, `Infinity`, `1e999`: tokens that are not JSON but that a lenient parser accepts);
- `drop`: remove that field from the row (the columns after it move left);
- `duplicate`: every row twice, the copy's close moved up by one tick-sized step (two different
  candles for one minute);
- `reverse`: the rows in the opposite of the venue's documented order;
- `shift`: every row's time moved by `minutes` (rows for the wrong minutes).

`minute` (unix seconds) limits `set` and `drop` to that candle's row; by default every row is hit.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal, cast

from .responses import Literal as JsonLiteral

TamperOp = Literal["set", "drop", "duplicate", "reverse", "shift"]
TAMPER_OPS: Final[tuple[TamperOp, ...]] = ("set", "drop", "duplicate", "reverse", "shift")
FIELDS: Final = ("time", "open", "high", "low", "close")


@dataclass(frozen=True)
class RowFields:
    """Where a venue's row keeps each field; `time_unit` is what one second counts (ms: 1000)."""

    time: int
    open: int
    high: int
    low: int
    close: int
    time_unit: int = 1

    def index(self, field: str) -> int:
        """The column of `field` (one of `FIELDS`)."""
        return cast("int", getattr(self, field))


@dataclass(frozen=True)
class Tamper:
    """One validated tamper operation (see the module docstring)."""

    op: TamperOp
    field: str = "close"
    value: object = None
    literal: str | None = None
    minute: int | None = None
    minutes: int = 0

    def to_json(self) -> dict[str, object]:
        """The operation as `GET /_sim/faults` shows it."""
        shown: dict[str, object] = {"op": self.op}
        if self.op in ("set", "drop"):
            shown["field"] = self.field
            if self.minute is not None:
                shown["minute"] = self.minute
        if self.op == "set":
            shown["literal" if self.literal is not None else "value"] = (
                self.literal if self.literal is not None else self.value
            )
        if self.op == "shift":
            shown["minutes"] = self.minutes
        return shown

    def apply(self, rows: list[list[object]], fields: RowFields) -> list[list[object]]:
        """The damaged rows (new lists; `rows` is left as it was)."""
        copied = [list(row) for row in rows]
        if self.op == "reverse":
            return copied[::-1]
        if self.op == "duplicate":
            return [twin for row in copied for twin in (row, _moved(row, fields))]
        if self.op == "shift":
            step = self.minutes * 60 * fields.time_unit
            for row in copied:
                time = row[fields.time]
                if isinstance(time, int):
                    row[fields.time] = time + step
            return copied
        column = fields.index(self.field)
        for row in copied:
            if self.minute is not None and row[fields.time] != self.minute * fields.time_unit:
                continue
            if self.op == "drop":
                del row[column]
            else:
                row[column] = JsonLiteral(self.literal) if self.literal is not None else self.value
        return copied


def _moved(row: list[object], fields: RowFields) -> list[object]:
    """A copy of `row` whose close is a little higher: the same minute, another candle."""
    twin = list(row)
    close = twin[fields.close]
    if isinstance(close, Decimal):
        twin[fields.close] = close * Decimal("1.001")
    elif isinstance(close, str):
        with suppress(ArithmeticError):
            twin[fields.close] = str(Decimal(close) * Decimal("1.001"))
    return twin
