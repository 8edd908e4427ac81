"""Candles as a venue serves them: fair closes bent by freeze/jump faults, plus a forming minute.

A closed candle opens at the previous minute's close and closes at the model's close; its wicks,
volume and trade count are hashed from (seed, venue, minute) so they are as reproducible as the
close. The minute that contains "now" is still forming: its close is a partial one (part of the
way from the open toward the final close, plus a wobble) and is never equal to the final close,
so a client that takes the forming row for a closed one reports a wrong price and a test notices.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from common.timeutil import MINUTE, minute_floor

from .prices import TICK, PriceModel, gauss_hash, quantize, unit_hash


@dataclass(frozen=True)
class PriceOverrides:
    """Faults that change prices for one venue: a freeze from a minute on, and % jumps."""

    freeze_minute: int | None = None
    jumps: tuple[tuple[int, Decimal], ...] = ()


@dataclass(frozen=True)
class Candle:
    """One 1-minute candle of one venue, prices already rounded to the venue's tick."""

    venue: str
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
        return quantize(self.venue, (self.high + self.low + self.open + self.close) / 4)


_VOLUME_QUANTUM = Decimal("0.00000001")


class Market:
    """Answers "what does venue V show for minute M at time T" for the venue adapters."""

    def __init__(self, model: PriceModel) -> None:
        self.model = model

    def close(self, venue: str, minute: int, overrides: PriceOverrides | None = None) -> Decimal:
        """The final close of `minute` on `venue`, after freeze and jump faults."""
        ov = overrides or PriceOverrides()
        if ov.freeze_minute is not None and minute >= ov.freeze_minute:
            # A frozen venue keeps repeating the last close it had before the freeze.
            return self.close(venue, ov.freeze_minute - MINUTE, ov)
        price = self.model.raw_close(venue, minute)
        for jump_minute, percent in ov.jumps:
            if minute >= jump_minute:
                price *= 1 + percent / 100
        return quantize(venue, price)

    def candle(
        self,
        venue: str,
        minute: int,
        now: float,
        overrides: PriceOverrides | None = None,
    ) -> Candle:
        """The candle `venue` shows for `minute` at time `now` (forming if `now` is inside it)."""
        ov = overrides or PriceOverrides()
        seed = self.model.seed
        index = minute // MINUTE
        open_price = self.close(venue, minute - MINUTE, ov)
        final_close = self.close(venue, minute, ov)
        frozen = ov.freeze_minute is not None and minute >= ov.freeze_minute
        tick = TICK[venue]
        wick_unit = self.model.absolute_volatility()
        full_volume = Decimal(5 + 30 * unit_hash(seed, venue, index, "volume"))

        closed = now >= minute + MINUTE
        if closed:
            fraction = Decimal(1)
            close_price = final_close
        else:
            fraction = Decimal(max(now - minute, 0.0) / MINUTE)
            close_price = (
                final_close  # a frozen venue does not move, not even within the minute
                if frozen
                else self._partial_close(venue, minute, now, open_price, final_close)
            )

        if frozen:
            high = low = close_price
        else:
            wick_up = abs(Decimal(gauss_hash(seed, venue, index, "high"))) * wick_unit / 2
            wick_down = abs(Decimal(gauss_hash(seed, venue, index, "low"))) * wick_unit / 2
            high = quantize(venue, max(open_price, close_price) + wick_up * fraction)
            low = quantize(venue, min(open_price, close_price) - wick_down * fraction)
            low = max(low, tick)
        volume = (full_volume * fraction).quantize(_VOLUME_QUANTUM)
        if frozen:
            volume = Decimal("0.00010000")
        trades = int(volume * 130) + (1 if volume > 0 else 0)
        return Candle(
            venue=venue,
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
        self, venue: str, minute: int, now: float, open_price: Decimal, final_close: Decimal
    ) -> Decimal:
        elapsed = max(now - minute, 0.0)
        progress = Decimal(elapsed / MINUTE)
        wobble = (
            Decimal(gauss_hash(self.model.seed, venue, minute // MINUTE, "wobble", int(elapsed)))
            * self.model.absolute_volatility()
            / 3
        )
        partial = quantize(venue, open_price + (final_close - open_price) * progress + wobble)
        if partial == final_close:
            # The forming close must differ from the final one, or a client that wrongly takes
            # the forming row would still report the right price and no test could catch it.
            partial += (
                TICK[venue] if unit_hash(self.model.seed, venue, minute) < 0.5 else -TICK[venue]
            )
        return partial

    @staticmethod
    def forming_minute(now: float) -> int:
        """The open time of the minute that is still forming at `now`."""
        return minute_floor(now)
