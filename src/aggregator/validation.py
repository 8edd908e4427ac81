"""Turning a wire PriceRequest into a trusted Observation, or refusing it with the field named.

Everything a hostile or broken client can send is checked here, before the book is touched:
non-finite or non-positive prices, prices outside the sanity floor and ceiling (a USDT/USD rate
outside its own bounds), unknown assets, timestamps that are not a closed candle's minute or are
out of the accepted time range, unknown exchanges or quotes, empty, over-long or unprintable ids.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from aggregator.config import AggregatorConfig
from common.errors import InvalidObservationError, PreconditionError
from common.exchanges import (
    DEFAULT_QUOTE,
    EXCHANGES,
    MAX_ID_LENGTH,
    NODE_ID_PATTERN,
    NODE_ID_RULE,
    QUOTES,
)
from common.proto import oracle_pb2
from common.timeutil import MINUTE

_SYMBOL = re.compile(r"[A-Za-z0-9/_.-]*")
MAX_SYMBOL_LENGTH = 32
MAX_SIGNATURE_LENGTH = 1024
# The assets an observation prices: BTC (the oracle's price) or USDT, the USDT/USD rate that
# converts USDT-quoted BTC prices (a node sends it with base "USDT", quote "USD").
BTC: Final = "BTC"
USDT: Final = "USDT"
# A USDT/USD close outside this is no rate to convert prices with (the node's RATE_BOUNDS).
RATE_FLOOR: Final = Decimal("0.5")
RATE_CEILING: Final = Decimal(2)


# Cached: a node sends the same id and symbol every minute. Only strings within the length
# limits reach these, so the caches stay small.
@functools.lru_cache(maxsize=4096)
def _is_valid_id(node_id: str) -> bool:
    return NODE_ID_PATTERN.fullmatch(node_id) is not None


@functools.lru_cache(maxsize=256)
def _is_valid_symbol(symbol: str) -> bool:
    return _SYMBOL.fullmatch(symbol) is not None


@dataclass(frozen=True, slots=True)
class Observation:
    """A validated report: one node's close price of one exchange's closed 1-minute candle."""

    exchange: str
    node_id: str
    minute: int
    price: Decimal
    quote: str
    simulated: bool
    base: str = BTC
    symbol: str = ""
    signature: bytes = b""
    public_key: bytes = b""

    @property
    def is_rate(self) -> bool:
        """A USDT/USD rate observation rather than a BTC price."""
        return self.base == USDT


def validate_submission(
    request: oracle_pb2.PriceRequest, config: AggregatorConfig, now: float
) -> Observation:
    """The request as an Observation; raises InvalidObservationError or PreconditionError."""
    base = request.base or BTC
    if base not in (BTC, USDT):
        raise InvalidObservationError(
            "base", f"unknown asset {request.base!r}; expected BTC or USDT"
        )
    if base == USDT:
        price = _validate_rate(request.price)
    else:
        price = _validate_price(request.price, config)
    node_id = _validate_node_id(request.node_id)
    source = validate_exchange(request.source, field="source")
    quote = request.quote or DEFAULT_QUOTE[source]
    if quote not in QUOTES:
        raise InvalidObservationError(
            "quote", f"unknown quote {request.quote!r}; expected {' or '.join(sorted(QUOTES))}"
        )
    if base == USDT and quote != "USD":
        raise InvalidObservationError("quote", "a USDT rate observation is quoted in USD")
    if len(request.symbol) > MAX_SYMBOL_LENGTH or not _is_valid_symbol(request.symbol):
        raise InvalidObservationError(
            "symbol", f"at most {MAX_SYMBOL_LENGTH} of letters, digits and / _ . -"
        )
    if len(request.signature) > MAX_SIGNATURE_LENGTH:
        raise InvalidObservationError("signature", f"longer than {MAX_SIGNATURE_LENGTH} characters")

    minute = _validate_minute(request.timestamp, config, now)

    if request.simulated and not config.simulate:
        raise PreconditionError(
            "simulated: this aggregator serves real prices and refuses simulated ones; "
            "start it with --simulate for offline runs"
        )
    if config.simulate and not request.simulated:
        raise PreconditionError(
            "simulated: this aggregator runs in simulate mode and refuses real prices; "
            "restart it without --simulate to serve real data"
        )
    return Observation(
        source,
        node_id,
        minute,
        price,
        quote,
        request.simulated,
        base=base,
        symbol=request.symbol,
        signature=bytes(request.observation_signature),
        public_key=bytes(request.public_key),
    )


def _validate_price(price: float, config: AggregatorConfig) -> Decimal:
    if not math.isfinite(price) or price <= 0:
        raise InvalidObservationError("price", f"must be a finite number > 0, got {price!r}")
    if price > config.max_price:
        raise InvalidObservationError(
            "price", f"{price!r} is above the sanity ceiling max_price = {config.max_price:g}"
        )
    if price < config.min_price:
        # One report of 0.01 (or 5e-324) moved the aggregate by -16.7 % before this floor.
        raise InvalidObservationError(
            "price", f"{price!r} is below the sanity floor min_price = {config.min_price:g}"
        )
    # repr() is the shortest decimal that round-trips: 102375.5, not 102375.49999999999
    return Decimal(repr(price))


def _validate_rate(price: float) -> Decimal:
    if not math.isfinite(price) or not RATE_FLOOR <= Decimal(repr(price)) <= RATE_CEILING:
        raise InvalidObservationError(
            "price",
            f"a USDT/USD rate must be between {RATE_FLOOR} and {RATE_CEILING}, got {price!r}",
        )
    return Decimal(repr(price))


def _validate_node_id(node_id: str) -> str:
    if not node_id:
        raise InvalidObservationError("node_id", "must not be empty")
    if len(node_id) > MAX_ID_LENGTH:
        raise InvalidObservationError("node_id", f"longer than {MAX_ID_LENGTH} characters")
    if not _is_valid_id(node_id):
        raise InvalidObservationError("node_id", f"use {NODE_ID_RULE}")
    return node_id


def validate_exchange(name: str, *, field: str) -> str:
    """An exchange name as sent in `field` (a submission's source, a reader's source_filter)."""
    if not name:
        raise InvalidObservationError(field, "must not be empty")
    if len(name) > MAX_ID_LENGTH:
        raise InvalidObservationError(field, f"longer than {MAX_ID_LENGTH} characters")
    if name not in EXCHANGES:
        raise InvalidObservationError(
            field, f"unknown exchange {name!r}; expected one of {', '.join(EXCHANGES)}"
        )
    return name


def _validate_minute(timestamp: int, config: AggregatorConfig, now: float) -> int:
    if timestamp == 0:
        raise InvalidObservationError(
            "timestamp", "required: the candle's open time in unix seconds"
        )
    if timestamp % MINUTE:
        raise InvalidObservationError(
            "timestamp",
            f"{timestamp} is not a multiple of 60: send the candle's open minute, not the "
            "fetch time",
        )
    if timestamp > now + config.max_future:
        raise InvalidObservationError(
            "timestamp",
            f"{timestamp} is {timestamp - now:.0f} s in the future "
            f"(more than {config.max_future:g} s); check the node's clock",
        )
    late = now - (timestamp + MINUTE)
    if late > config.lateness:
        raise InvalidObservationError(
            "timestamp",
            f"{timestamp}: candle closed {late:.0f} s ago, beyond the lateness limit of "
            f"{config.lateness:g} s",
        )
    return timestamp
