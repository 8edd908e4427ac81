"""The signed round report: canonical bytes of one closed round, its tagged hash and signature.

A report is what a Bitcoin contract or an auditor relies on, so it signs the *meaning* of a closed
`oracle_pb2.Round` (minute, status, exact prices, method, every input with every node's own signed
observation), never protobuf bytes, which have no canonical form. Fields that may change after a
round closed (`late_reports`) or that are prose (`message`) are left out, so the same closed round
always encodes to the same bytes. `docs/committer.md` describes the layout byte by byte; every
variable-length field carries its length, so `decode_report` inverts `encode_report` exactly and two
different reports can never share an encoding.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from common.proto import oracle_pb2
from common.schnorr import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, tagged_hash, verify
from common.timeutil import MINUTE

DOMAIN: Final = b"btcfi-oracle/round-report"
VERSION: Final = 1
TAG: Final = f"{DOMAIN.decode()}/v{VERSION}"
E8: Final = 10**8
MAX_U64: Final = 2**64 - 1
# A round has one input per exchange and each input a few nodes; the bounds only keep a hostile
# or broken aggregator from making the committer sign something absurd.
MAX_INPUTS: Final = 64
MAX_OBSERVATIONS: Final = 64
MAX_TEXT: Final = 255

# Exchanges whose default pair is quoted in USDT (docs/signing.md: an empty quote means this).
_DEFAULT_QUOTE: Final = {"binance": "USDT"}

_HEAD = struct.Struct(">QBBBBQQQBQ")


class ReportError(ValueError):
    """A round cannot be reported (not closed, malformed) or bytes are not a canonical report."""


@dataclass(frozen=True, slots=True)
class SignedInput:
    """One node's observation inside a round input, as the node signed it (or unsigned)."""

    node_id: str
    symbol: str
    quote: str
    price_e8: int
    received_at_ms: int
    public_key: bytes  # 32 bytes, or empty when the node did not sign
    signature: bytes  # 64 bytes, or empty


@dataclass(frozen=True, slots=True)
class ReportInput:
    """One exchange's input to the round; `excluded_reason` is empty for a kept input."""

    source: str
    quote: str
    minute: int
    price_e8: int
    usd_price_e8: int
    observations: tuple[SignedInput, ...]
    excluded_reason: str = ""


@dataclass(frozen=True, slots=True)
class RoundFacts:
    """Everything a report signs about one closed round."""

    minute: int
    status: int  # oracle_pb2.PriceStatus number
    method: int  # oracle_pb2.AggregationMethod number
    close_reason: int  # oracle_pb2.RoundCloseReason number
    simulated: bool
    price_e8: int
    confidence_e8: int
    closed_at_ms: int
    usdt_converted: bool
    usdt_at_par: bool
    usdt_usd_rate_e8: int
    inputs: tuple[ReportInput, ...]
    excluded: tuple[ReportInput, ...]


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A report as published: its bytes, their tagged hash, the oracle's key and signature."""

    facts: RoundFacts
    oracle_key: bytes
    encoding: bytes
    digest: bytes
    signature: bytes

    @property
    def minute(self) -> int:
        return self.facts.minute


def _e8_of_double(value: float) -> int:
    # The rate travels only as a double in oracle.proto; its nearest 8-decimal value is what the
    # report fixes, half to even, so every reader derives the same integer from the same double.
    if not math.isfinite(value) or value < 0 or value > 1e10:
        raise ReportError(f"usdt_usd_rate {value!r} is not a rate")
    return int((Decimal(value) * E8).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _observation(node: oracle_pb2.NodeObservation, source: str) -> SignedInput:
    public_key, signature = bytes(node.public_key), bytes(node.signature)
    if (public_key == b"") != (signature == b""):
        raise ReportError(f"{source}/{node.node_id}: a signature needs its public key and back")
    if public_key and (len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES):
        raise ReportError(f"{source}/{node.node_id}: malformed public key or signature")
    return SignedInput(
        node_id=node.node_id,
        symbol=node.symbol,
        quote=node.quote or _DEFAULT_QUOTE.get(source, "USD"),
        price_e8=node.price_e8,
        received_at_ms=node.received_at_ms,
        public_key=public_key,
        signature=signature,
    )


def _input(item: oracle_pb2.RoundInput, *, kept: bool) -> ReportInput:
    if len(item.observations) > MAX_OBSERVATIONS:
        raise ReportError(f"{item.source}: more than {MAX_OBSERVATIONS} observations")
    reason = "" if kept else (item.excluded_reason or "excluded")
    return ReportInput(
        source=item.source,
        quote=item.quote or _DEFAULT_QUOTE.get(item.source, "USD"),
        minute=item.minute,
        price_e8=item.price_e8,
        usd_price_e8=item.usd_price_e8,
        observations=tuple(_observation(node, item.source) for node in item.observations),
        excluded_reason=reason,
    )


def facts_from_round(round_: oracle_pb2.Round) -> RoundFacts:
    """The reportable facts of a closed round; ReportError for an open or malformed one."""
    if not round_.closed:
        raise ReportError(f"round {round_.minute} is not closed: only closed rounds are reported")
    if round_.minute <= 0 or round_.minute % MINUTE:
        raise ReportError(f"round minute {round_.minute} is not a positive multiple of 60")
    if round_.status == oracle_pb2.PRICE_STATUS_UNSPECIFIED:
        raise ReportError(f"round {round_.minute} has no status")
    if len(round_.inputs) > MAX_INPUTS or len(round_.excluded) > MAX_INPUTS:
        raise ReportError(f"round {round_.minute}: more than {MAX_INPUTS} inputs")
    facts = RoundFacts(
        minute=round_.minute,
        status=round_.status,
        method=round_.method,
        close_reason=round_.close_reason,
        simulated=round_.simulated,
        price_e8=round_.price_e8,
        confidence_e8=round_.confidence_e8,
        closed_at_ms=round_.closed_at_ms,
        usdt_converted=round_.usdt_converted,
        usdt_at_par=round_.usdt_at_par,
        usdt_usd_rate_e8=_e8_of_double(round_.usdt_usd_rate) if round_.usdt_converted else 0,
        inputs=tuple(_input(item, kept=True) for item in round_.inputs),
        excluded=tuple(_input(item, kept=False) for item in round_.excluded),
    )
    encode_report(facts, bytes(PUBLIC_KEY_BYTES))  # every field fits its width, or ReportError
    return facts


# --- encoding -------------------------------------------------------------------------------


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > MAX_TEXT:
        raise ReportError(f"text field {value[:32]!r}... is longer than {MAX_TEXT} bytes")
    return bytes((len(data),)) + data


def _u64(value: int) -> bytes:
    if not 0 <= value <= MAX_U64:
        raise ReportError(f"{value} does not fit an unsigned 64-bit field")
    return value.to_bytes(8, "big")


def _blob(value: bytes) -> bytes:
    return bytes((len(value),)) + value


def _encode_input(item: ReportInput) -> bytes:
    parts = [
        _text(item.source),
        _text(item.quote),
        _u64(item.minute),
        _u64(item.price_e8),
        _u64(item.usd_price_e8),
        _text(item.excluded_reason),
        bytes((len(item.observations),)),
    ]
    for node in item.observations:
        parts += [
            _text(node.node_id),
            _text(node.symbol),
            _text(node.quote),
            _u64(node.price_e8),
            _u64(node.received_at_ms),
            _blob(node.public_key),
            _blob(node.signature),
        ]
    return b"".join(parts)


def encode_report(facts: RoundFacts, oracle_key: bytes) -> bytes:
    """The canonical bytes of a report by `oracle_key` (docs/committer.md, "Round report")."""
    if len(oracle_key) != PUBLIC_KEY_BYTES:
        raise ReportError("the oracle key is a 32-byte x-only public key")
    for value in (facts.status, facts.method, facts.close_reason):
        if not 0 <= value <= 255:
            raise ReportError(f"enum value {value} does not fit one byte")
    if len(facts.inputs) > MAX_INPUTS or len(facts.excluded) > MAX_INPUTS:
        raise ReportError(f"more than {MAX_INPUTS} inputs")
    flags = int(facts.usdt_converted) | int(facts.usdt_at_par) << 1
    for value in (facts.minute, facts.price_e8, facts.confidence_e8, facts.closed_at_ms):
        _u64(value)
    _u64(facts.usdt_usd_rate_e8)
    head = _HEAD.pack(
        facts.minute,
        facts.status,
        facts.method,
        facts.close_reason,
        int(facts.simulated),
        facts.price_e8,
        facts.confidence_e8,
        facts.closed_at_ms,
        flags,
        facts.usdt_usd_rate_e8,
    )
    parts = [DOMAIN, bytes((VERSION,)), oracle_key, head, bytes((len(facts.inputs),))]
    parts += [_encode_input(item) for item in facts.inputs]
    parts.append(bytes((len(facts.excluded),)))
    parts += [_encode_input(item) for item in facts.excluded]
    return b"".join(parts)


class _Reader:
    """Reads a report encoding field by field; any shortfall is a ReportError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise ReportError("report encoding truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def text(self) -> str:
        try:
            return self.take(self.byte()).decode("utf-8")
        except UnicodeDecodeError:
            raise ReportError("report encoding holds invalid UTF-8") from None

    def blob(self, *sizes: int) -> bytes:
        value = self.take(self.byte())
        if len(value) not in sizes:
            raise ReportError(f"report encoding: a {len(value)}-byte key or signature")
        return value


def _decode_input(reader: _Reader) -> ReportInput:
    source, quote = reader.text(), reader.text()
    minute, price_e8, usd_price_e8 = reader.u64(), reader.u64(), reader.u64()
    reason = reader.text()
    observations = []
    for _ in range(reader.byte()):
        node_id, symbol, node_quote = reader.text(), reader.text(), reader.text()
        node_price, received = reader.u64(), reader.u64()
        public_key = reader.blob(0, PUBLIC_KEY_BYTES)
        signature = reader.blob(0, SIGNATURE_BYTES)
        if (public_key == b"") != (signature == b""):
            raise ReportError("report encoding: a signature without its key or back")
        observations.append(
            SignedInput(node_id, symbol, node_quote, node_price, received, public_key, signature)
        )
    return ReportInput(source, quote, minute, price_e8, usd_price_e8, tuple(observations), reason)


def decode_report(data: bytes) -> tuple[RoundFacts, bytes]:
    """The facts and oracle key `data` encodes; ReportError unless it is exactly canonical."""
    reader = _Reader(bytes(data))
    if reader.take(len(DOMAIN)) != DOMAIN:
        raise ReportError("not a round report: wrong domain tag")
    if reader.byte() != VERSION:
        raise ReportError(f"unsupported round report version (this code reads {VERSION})")
    oracle_key = reader.take(PUBLIC_KEY_BYTES)
    (
        minute,
        status,
        method,
        close_reason,
        simulated,
        price_e8,
        confidence_e8,
        closed_at_ms,
        flags,
        rate,
    ) = _HEAD.unpack(reader.take(_HEAD.size))
    if simulated > 1 or flags > 3:
        raise ReportError("report encoding: a flag byte out of range")
    inputs = tuple(_decode_input(reader) for _ in range(reader.byte()))
    if any(item.excluded_reason for item in inputs):
        raise ReportError("report encoding: a kept input carries an exclusion reason")
    excluded = tuple(_decode_input(reader) for _ in range(reader.byte()))
    if any(not item.excluded_reason for item in excluded):
        raise ReportError("report encoding: an excluded input without a reason")
    if reader.offset != len(reader.data):
        raise ReportError("report encoding has trailing bytes")
    facts = RoundFacts(
        minute=minute,
        status=status,
        method=method,
        close_reason=close_reason,
        simulated=bool(simulated),
        price_e8=price_e8,
        confidence_e8=confidence_e8,
        closed_at_ms=closed_at_ms,
        usdt_converted=bool(flags & 1),
        usdt_at_par=bool(flags & 2),
        usdt_usd_rate_e8=rate,
        inputs=inputs,
        excluded=excluded,
    )
    if encode_report(facts, oracle_key) != reader.data:
        raise ReportError("report encoding is not canonical")
    return facts, oracle_key


def report_digest(encoding: bytes) -> bytes:
    """The 32-byte BIP340 tagged hash the oracle signs and the anchoring tree commits to."""
    return tagged_hash(TAG, encoding)


def sign_report(key: SigningKey, facts: RoundFacts, *, aux: bytes | None = None) -> SignedReport:
    """Encode, hash and sign `facts` with the oracle's key (fresh aux randomness by default)."""
    encoding = encode_report(facts, key.public_key)
    digest = report_digest(encoding)
    signature = key.sign(digest, aux=aux)
    return SignedReport(facts, key.public_key, encoding, digest, signature)


def verify_report_signature(encoding: bytes, signature: bytes, oracle_key: bytes) -> bool:
    """True when `signature` is `oracle_key`'s signature of `encoding` and the key it names."""
    if encoding[len(DOMAIN) + 1 : len(DOMAIN) + 1 + PUBLIC_KEY_BYTES] != oracle_key:
        return False
    return verify(oracle_key, report_digest(encoding), signature)


def load_signed_report(encoding: bytes, signature: bytes) -> SignedReport:
    """A stored or received report back as a `SignedReport` (signature not checked here)."""
    facts, oracle_key = decode_report(encoding)
    return SignedReport(facts, oracle_key, encoding, report_digest(encoding), signature)
