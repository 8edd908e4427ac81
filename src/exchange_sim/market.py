"""Candles as a venue serves them: fair closes bent by freeze/jump faults, plus a forming minute.

A candle belongs to a series (one pair on one venue, `prices.SERIES`); freeze and jump faults
bend a venue's BTC pair only, never its USDT/USD rate.

A closed candle opens at the previous minute's close and closes at the model's close; its wicks,
volume and trade count are hashed from (seed, venue, minute) so they are as reproducible as the
close. The minute that contains "now" is still forming: its close is a partial one (part of the
way from the open toward the final close, plus a wobble) and is never equal to the final close,
so a client that takes the forming row for a closed one reports a wrong price and a test notices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from common.timeutil import MINUTE, minute_floor

from .prices import BTC, SERIES, TICK, PriceModel, gauss_hash, quantize, unit_hash


@dataclass(frozen=True)
class PriceOverrides:
    """Faults that change prices for one venue: a freeze from a minute on, and % jumps."""

    freeze_minute: int | None = None
    jumps: tuple[tuple[int, Decimal], ...] = ()


@dataclass(frozen=True)
class Candle:
    """One 1-minute candle of one series, prices already rounded to the series' tick."""

    series: str
    minute: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    closed: bool

    @property
    def vwap(self) -> Decimal:
        """A plausible volume-weighted price: between the low and the high (Kraken sends one)."""
        return quantize(self.series, (self.high + self.low + self.open + self.close) / 4)


_VOLUME_QUANTUM = Decimal("0.00000001")
_NO_OVERRIDES = PriceOverrides()


def _no_faults(_venue: str) -> PriceOverrides:
    return _NO_OVERRIDES


class Market:
    """Answers "what does series S show for minute M at time T" for the venue adapters.

    `models` holds one price model per asset (BTC, USDT); `overrides` gives a venue's current
    price faults, which bend that venue's BTC series only.
    """

    def __init__(
        self,
        models: Mapping[str, PriceModel],
        overrides: Callable[[str], PriceOverrides] = _no_faults,
    ) -> None:
        self.models = dict(models)
        self._overrides = overrides

    def overrides(self, series: str) -> PriceOverrides:
        """The price faults that apply to `series`: its venue's, if it is the venue's BTC pair."""
        spec = SERIES[series]
        return self._overrides(spec.venue) if spec.asset == BTC else _NO_OVERRIDES

    def close(self, series: str, minute: int) -> Decimal:
        """The final close of `minute` on `series`, after freeze and jump faults."""
        return self._close(series, minute, self.overrides(series))

    def _close(self, series: str, minute: int, ov: PriceOverrides) -> Decimal:
        if ov.freeze_minute is not None and minute >= ov.freeze_minute:
            # A frozen venue keeps repeating the last close it had before the freeze.
            return self._close(series, ov.freeze_minute - MINUTE, ov)
        price = self._model(series).raw_close(series, minute)
        for jump_minute, percent in ov.jumps:
            if minute >= jump_minute:
                price *= 1 + percent / 100
        return quantize(series, price)

    def _model(self, series: str) -> PriceModel:
        return self.models[SERIES[series].asset]

    def candle(self, series: str, minute: int, now: float) -> Candle:
        """The candle `series` shows for `minute` at time `now` (forming if `now` is inside it)."""
        ov = self.overrides(series)
        model = self._model(series)
        seed = model.seed
        index = minute // MINUTE
        open_price = self._close(series, minute - MINUTE, ov)
        final_close = self._close(series, minute, ov)
        frozen = ov.freeze_minute is not None and minute >= ov.freeze_minute
        tick = TICK[series]
        wick_unit = model.absolute_volatility()
        full_volume = Decimal(5 + 30 * unit_hash(seed, series, index, "volume"))

        closed = now >= minute + MINUTE
        if closed:
            fraction = Decimal(1)
            close_price = final_close
        else:
            fraction = Decimal(max(now - minute, 0.0) / MINUTE)
            close_price = (
                final_close  # a frozen venue does not move, not even within the minute
                if frozen
                else self._partial_close(series, minute, now, open_price, final_close)
            )

        if frozen:
            high = low = close_price
        else:
            wick_up = abs(Decimal(gauss_hash(seed, series, index, "high"))) * wick_unit / 2
            wick_down = abs(Decimal(gauss_hash(seed, series, index, "low"))) * wick_unit / 2
            high = quantize(series, max(open_price, close_price) + wick_up * fraction)
            low = quantize(series, min(open_price, close_price) - wick_down * fraction)
            low = max(low, tick)
        volume = (full_volume * fraction).quantize(_VOLUME_QUANTUM)
        if frozen:
            volume = Decimal("0.00010000")
        trades = int(volume * 130) + (1 if volume > 0 else 0)
        return Candle(
            series=series,
            minute=minute,
            open=open_price,
            high=high,
            low=low,
            close=close_price,
            volume=volume,
            trades=trades,
            closed=closed,
        )

    def _partial_close(
        self, series: str, minute: int, now: float, open_price: Decimal, final_close: Decimal
    ) -> Decimal:
        model = self._model(series)
        elapsed = max(now - minute, 0.0)
        progress = Decimal(elapsed / MINUTE)
        wobble = (
            Decimal(gauss_hash(model.seed, series, minute // MINUTE, "wobble", int(elapsed)))
            * model.absolute_volatility()
            / 3
        )
        partial = quantize(series, open_price + (final_close - open_price) * progress + wobble)
        if partial == final_close:
            # The forming close must differ from the final one, or a client that wrongly takes
            # the forming row would still report the right price and no test could catch it.
            tick = TICK[series]
            partial += tick if unit_hash(model.seed, series, minute) < 0.5 else -tick
        return partial

    @staticmethod
    def forming_minute(now: float) -> int:
        """The open time of the minute that is still forming at `now`."""
        return minute_floor(now)
