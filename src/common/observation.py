"""The signed form of one observation: canonical bytes, BIP340 tagged hash, sign and verify.

A node signs, and the aggregator verifies, the *meaning* of a submission (which node, which
exchange, which pair, which candle, which exact price, simulated or not), never the protobuf bytes:
protobuf has no canonical encoding, and the `double` price is not exact. So both sides build an
`ObservationPayload` from their own values and encode it here, byte for byte as `docs/signing.md`
describes, then hash it with the BIP340 tag `btcfi-oracle/observation/v1`. Every string is ASCII
from a small alphabet with a length byte before it and every integer is fixed-width big-endian, so
two different payloads can never encode to the same bytes (`decode_observation` inverts it exactly),
and Unicode normalisation can never make two nodes disagree about what was signed.

Prices are exact integers with 8 decimals (`price_e8`), converted from and to `Decimal` here only.
A venue may quote more decimals than 8; the node rounds with `quantize_e8` (half-even) before
`price_to_e8`, which refuses any value that is not already exact, so no conversion ever rounds
silently.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Final

from common.errors import InvalidObservationError
from common.exchanges import MAX_ID_LENGTH, NODE_ID_PATTERN, NODE_ID_RULE
from common.schnorr import SigningKey, tagged_hash, verify
from common.timeutil import MINUTE

# The first bytes of every encoding (fixed width, no length byte) and its format version. A change
# to the layout gets a new version, and with it a new BIP340 tag, so a signature made under one
# layout can never verify under another.
DOMAIN: Final = b"btcfi-oracle/observation"
VERSION: Final = 1
TAG: Final = f"{DOMAIN.decode()}/v{VERSION}"

PRICE_DECIMALS: Final = 8
PRICE_SCALE: Final = 10**PRICE_DECIMALS
# Ten billion per unit of base: far above any BTC price, and small enough that price_e8 (at most
# 10^18) fits a signed 64-bit integer (SQLite, Java, Go int64) as well as the proto's uint64.
MAX_PRICE: Final = Decimal(10) ** 10
MAX_PRICE_E8: Final = int(MAX_PRICE) * PRICE_SCALE
# Candle minutes are unix seconds; kept below 2^63 for the same int64 reason.
MAX_MINUTE: Final = 2**63 - 1

MAX_EXCHANGE_LENGTH: Final = 32
MAX_ASSET_LENGTH: Final = 16
MAX_SYMBOL_LENGTH: Final = 32

# The alphabets are supersets of what the aggregator accepts (it also checks that an exchange or
# quote is one it knows), so a new venue or currency needs no new encoding version; they are all
# ASCII so that no two programs can disagree about a string's bytes.
_EXCHANGE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ASSET = re.compile(r"[A-Z0-9]+")
_SYMBOL = re.compile(r"[A-Za-z0-9/_.-]*")

# The fixed-width tail of an encoding: minute (u64), price_e8 (u64), simulated (one byte, 0 or 1).
_TAIL = struct.Struct(">QQ?")
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN)
_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMALS)


@dataclass(frozen=True, slots=True)
class ObservationPayload:
    """What a node's signature covers; refused at construction when it could not be encoded.

    Validation happens here, once, so that every payload that exists encodes, and so that the
    aggregator, building one from a request, gets an `InvalidObservationError` (INVALID_ARGUMENT)
    naming the field. Defaults are never implied: `base` and `quote` are always explicit ("BTC",
    "USD"), even where the wire lets an original node leave them empty.
    """

    node_id: str
    exchange: str
    base: str  # "BTC" or "USDT"
    quote: str  # "USD" or "USDT"
    symbol: str  # the venue's pair symbol, e.g. "BTCUSDT", "BTC-USD", "XBTUSD"
    minute: int  # candle open time, unix seconds
    price_e8: int  # exact price x 10^8
    simulated: bool

    def __post_init__(self) -> None:
        for rule in _TEXT_RULES:
            rule.check(getattr(self, rule.field))
        if type(self.minute) is not int or not 0 < self.minute <= MAX_MINUTE:
            raise InvalidObservationError("minute", "must be a positive integer below 2^63")
        if self.minute % MINUTE:
            raise InvalidObservationError("minute", f"{self.minute} is not a multiple of 60")
        if type(self.price_e8) is not int or not 0 < self.price_e8 <= MAX_PRICE_E8:
            raise InvalidObservationError(
                "price_e8", f"must be an integer from 1 to {MAX_PRICE_E8}"
            )
        if type(self.simulated) is not bool:
            raise InvalidObservationError("simulated", "must be a bool")


@dataclass(frozen=True, slots=True)
class _TextRule:
    """The alphabet and length bounds of one string field."""

    field: str
    alphabet: re.Pattern[str]
    shortest: int
    longest: int
    described: str

    def check(self, value: object) -> None:
        if type(value) is not str:
            raise InvalidObservationError(self.field, "must be a string")
        if not self.shortest <= len(value) <= self.longest:
            raise InvalidObservationError(
                self.field, f"must be {self.shortest} to {self.longest} characters"
            )
        # The alphabets are explicit ASCII classes (no \w or \d, which also match non-ASCII
        # letters and digits), so a string that passes encodes to one byte per character.
        if self.alphabet.fullmatch(value) is None:
            raise InvalidObservationError(self.field, f"use {self.described}")


_TEXT_RULES: Final = (
    _TextRule("node_id", NODE_ID_PATTERN, 1, MAX_ID_LENGTH, NODE_ID_RULE),
    _TextRule("exchange", _EXCHANGE, 1, MAX_EXCHANGE_LENGTH, "lowercase letters, digits, _ and -"),
    _TextRule("base", _ASSET, 1, MAX_ASSET_LENGTH, "uppercase letters and digits"),
    _TextRule("quote", _ASSET, 1, MAX_ASSET_LENGTH, "uppercase letters and digits"),
    _TextRule("symbol", _SYMBOL, 0, MAX_SYMBOL_LENGTH, "letters, digits and / _ . -"),
)


def encode_observation(payload: ObservationPayload) -> bytes:
    """The canonical bytes of `payload` (docs/signing.md, "Encoding")."""
    return b"".join(
        (
            DOMAIN,
            bytes((VERSION,)),
            _text(payload.node_id),
            _text(payload.exchange),
            _text(payload.base),
            _text(payload.quote),
            _text(payload.symbol),
            _TAIL.pack(payload.minute, payload.price_e8, payload.simulated),
        )
    )


def _text(value: str) -> bytes:
    data = value.encode("ascii")
    return bytes((len(data),)) + data


def decode_observation(data: bytes) -> ObservationPayload:
    """The payload `data` encodes; ValueError unless it is exactly a canonical encoding.

    The inverse of `encode_observation`: used to read stored evidence back and to prove (in the
    tests) that the encoding is unambiguous. Trailing bytes, a foreign domain or version, and a
    `simulated` byte other than 0 or 1 are all refused.
    """
    view = memoryview(data)
    if bytes(view[: len(DOMAIN)]) != DOMAIN:
        raise ValueError("not an observation encoding: wrong domain tag")
    offset = len(DOMAIN)
    if len(view) <= offset or view[offset] != VERSION:
        raise ValueError(f"unsupported observation encoding version (this code reads {VERSION})")
    offset += 1
    texts: list[str] = []
    for _ in range(5):
        if offset >= len(view):
            raise ValueError("observation encoding truncated")
        length = view[offset]
        end = offset + 1 + length
        if end > len(view):
            raise ValueError("observation encoding truncated")
        try:
            texts.append(bytes(view[offset + 1 : end]).decode("ascii"))
        except UnicodeDecodeError:
            raise ValueError("observation encoding holds a non-ASCII string") from None
        offset = end
    if len(view) - offset != _TAIL.size:
        raise ValueError("observation encoding has the wrong length")
    minute, price_e8, simulated_byte = struct.unpack_from(">QQB", view, offset)
    if simulated_byte > 1:
        raise ValueError("observation encoding: simulated must be 0 or 1")
    node_id, exchange, base, quote, symbol = texts
    try:
        return ObservationPayload(
            node_id, exchange, base, quote, symbol, minute, price_e8, bool(simulated_byte)
        )
    except InvalidObservationError as error:
        raise ValueError(f"observation encoding: {error}") from None


def observation_digest(payload: ObservationPayload) -> bytes:
    """The 32-byte BIP340 tagged hash of the encoding: what the signature signs."""
    return tagged_hash(TAG, encode_observation(payload))


def sign_observation(
    key: SigningKey, payload: ObservationPayload, *, aux: bytes | None = None
) -> bytes:
    """A 64-byte BIP340 signature of `payload` by `key`.

    `aux` is BIP340's auxiliary randomness: fresh by default; 32 fixed bytes only to reproduce a
    documented example (docs/signing.md signs with 32 zero bytes).
    """
    if aux is not None and len(aux) != 32:
        raise ValueError("aux must be 32 bytes")
    return key.sign(observation_digest(payload), aux=aux)


def verify_observation(public_key: bytes, payload: ObservationPayload, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s BIP340 signature of `payload`; never raises.

    The caller controls all three arguments in a hostile request: malformed keys or signatures
    are simply a failed check.
    """
    return verify(public_key, observation_digest(payload), signature)


def price_to_e8(price: Decimal) -> int:
    """`price` x 10^8 as an exact integer; ValueError when that is impossible or unreasonable.

    Refused: non-`Decimal` input (a float is not exact), NaN and infinities, zero and negative
    prices, prices above `MAX_PRICE`, and any value with a non-zero digit beyond the 8th decimal
    (trailing zeros are fine: Decimal("1.000000000") is 100000000). Round first with
    `quantize_e8` when the source may carry more decimals.
    """
    if not isinstance(price, Decimal):
        raise TypeError(f"price must be a Decimal, not {type(price).__name__}")
    if not price.is_finite():
        raise ValueError(f"price must be finite, got {price}")
    if price <= 0:
        raise ValueError(f"price must be > 0, got {price}")
    if price > MAX_PRICE:
        raise ValueError(f"price {price} is above the ceiling {MAX_PRICE}")
    _sign, digits, exponent = price.as_tuple()
    coefficient = int("".join(map(str, digits)))
    shift = int(exponent) + PRICE_DECIMALS  # an int: the price is finite
    if shift >= 0:
        scale: int = 10**shift
        return coefficient * scale
    # More than 8 decimals written: exact only if the extra ones are zeros. A coefficient with
    # fewer digits than the shift cannot end in that many zeros (it is > 0), so no huge power of
    # ten is ever built for a hostile exponent such as 1E-999999999.
    if -shift >= len(digits):
        raise ValueError(_too_precise(price))
    divisor: int = 10**-shift
    if coefficient % divisor:
        raise ValueError(_too_precise(price))
    return coefficient // divisor


def _too_precise(price: Decimal) -> str:
    return f"price {price} has more than {PRICE_DECIMALS} decimals; round it with quantize_e8"


def quantize_e8(price: Decimal) -> Decimal:
    """`price` rounded to 8 decimals, half to even: how a node makes a venue's price signable.

    Half-even (banker's rounding, IEEE 754's default) has no upward bias. The node calls this on
    the venue's close before `price_to_e8`; the rounded value is the one it signs and sends.
    """
    if not isinstance(price, Decimal) or not price.is_finite():
        raise ValueError(f"price must be a finite Decimal, got {price!r}")
    try:
        return price.quantize(_QUANTUM, context=_EXACT)
    except InvalidOperation:
        raise ValueError(f"price {price} is too large to quantize") from None


def e8_to_price(price_e8: int) -> Decimal:
    """The exact `Decimal` of a fixed-point price, with exponent -8 (1 -> Decimal("0.00000001"))."""
    if type(price_e8) is not int or not 0 < price_e8 <= MAX_PRICE_E8:
        raise ValueError(f"price_e8 must be an integer from 1 to {MAX_PRICE_E8}")
    return Decimal(price_e8).scaleb(-PRICE_DECIMALS, context=_EXACT)


def e8_to_double(price_e8: int) -> float:
    """The nearest double to price_e8 / 10^8: what `PriceRequest.price` must carry beside it.

    Python's int / int is correctly rounded, so this is exactly float(e8_to_price(price_e8)).
    """
    e8_to_price(price_e8)  # the same range check
    return price_e8 / PRICE_SCALE
