"""dlcspecs TLV serialisation of the oracle messages, both ways (Messaging.md, Oracle.md).

TLV = bigsize type, bigsize length, value; bigsize is Bitcoin's CompactSize but big-endian.
Integers are big-endian; a `string` is a bigsize length and NFC-normalised UTF-8. Two details the
spec text and the implementations disagree on are settled here as the spec's vectors and the
maintained wallets do: a digit decomposition's `base` is a u16 (the text says bigsize; the vectors,
rust-dlc, DDK and bitcoin-s write two octets), and an attestation carries a u16 count before its
outcomes (rust-dlc and DDK; the text omits it). Parsing refuses trailing bytes, non-NFC strings and
short reads, so a message parses back to exactly the object that serialised it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

ENUM_EVENT_DESCRIPTOR: Final = 55302
DIGIT_DECOMPOSITION_EVENT_DESCRIPTOR: Final = 55306
ORACLE_EVENT: Final = 55330
ORACLE_ANNOUNCEMENT: Final = 55332
ORACLE_ATTESTATION: Final = 55400


class TlvError(ValueError):
    """Bytes that are not the expected TLV message."""


def bigsize(value: int) -> bytes:
    if value < 0xFD:
        return bytes((value,))
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


def string(text: str) -> bytes:
    data = unicodedata.normalize("NFC", text).encode("utf-8")
    return bigsize(len(data)) + data


def tlv(tlv_type: int, value: bytes) -> bytes:
    return bigsize(tlv_type) + bigsize(len(value)) + value


@dataclass(frozen=True, slots=True)
class DigitDecompositionDescriptor:
    base: int
    is_signed: bool
    unit: str
    precision: int
    nb_digits: int

    def serialize(self) -> bytes:
        value = (
            self.base.to_bytes(2, "big")
            + bytes((int(self.is_signed),))
            + string(self.unit)
            + self.precision.to_bytes(4, "big", signed=True)
            + self.nb_digits.to_bytes(2, "big")
        )
        return tlv(DIGIT_DECOMPOSITION_EVENT_DESCRIPTOR, value)

    @property
    def nonce_count(self) -> int:
        return self.nb_digits + int(self.is_signed)


@dataclass(frozen=True, slots=True)
class OracleEvent:
    nonces: tuple[bytes, ...]
    maturity_epoch: int
    descriptor: DigitDecompositionDescriptor
    event_id: str

    def value(self) -> bytes:
        """The TLV value without its type and length: what the spec vectors sign (plain mode)."""
        return (
            len(self.nonces).to_bytes(2, "big")
            + b"".join(self.nonces)
            + self.maturity_epoch.to_bytes(4, "big")
            + self.descriptor.serialize()
            + string(self.event_id)
        )

    def serialize(self) -> bytes:
        return tlv(ORACLE_EVENT, self.value())


@dataclass(frozen=True, slots=True)
class OracleAnnouncement:
    signature: bytes
    public_key: bytes
    event: OracleEvent

    def serialize(self) -> bytes:
        return tlv(ORACLE_ANNOUNCEMENT, self.signature + self.public_key + self.event.serialize())


@dataclass(frozen=True, slots=True)
class OracleAttestation:
    event_id: str
    public_key: bytes
    signatures: tuple[bytes, ...]
    outcomes: tuple[str, ...]

    def serialize(self) -> bytes:
        value = (
            string(self.event_id)
            + self.public_key
            + len(self.signatures).to_bytes(2, "big")
            + b"".join(self.signatures)
            + len(self.outcomes).to_bytes(2, "big")
            + b"".join(string(outcome) for outcome in self.outcomes)
        )
        return tlv(ORACLE_ATTESTATION, value)


class Reader:
    """Reads TLV fields in order; every shortfall or oddity is a TlvError."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise TlvError("message truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def bigsize(self) -> int:
        first = self.uint(1)
        width = {0xFD: 2, 0xFE: 4, 0xFF: 8}.get(first)
        if width is None:
            return first
        value = self.uint(width)
        if value < {2: 0xFD, 4: 0x10000, 8: 0x100000000}[width]:
            raise TlvError("bigsize not minimally encoded")
        return value

    def string(self) -> str:
        try:
            text = self.take(self.bigsize()).decode("utf-8")
        except UnicodeDecodeError:
            raise TlvError("string is not UTF-8") from None
        if unicodedata.normalize("NFC", text) != text:
            raise TlvError("string is not NFC-normalised")
        return text

    def tlv(self, expected: int) -> Reader:
        tlv_type = self.bigsize()
        if tlv_type != expected:
            raise TlvError(f"TLV type {tlv_type}, expected {expected}")
        return Reader(self.take(self.bigsize()))

    def end(self) -> None:
        if self.offset != len(self.data):
            raise TlvError("trailing bytes after the message")


def _parse_descriptor(reader: Reader) -> DigitDecompositionDescriptor:
    body = reader.tlv(DIGIT_DECOMPOSITION_EVENT_DESCRIPTOR)
    base = body.uint(2)
    signed = body.uint(1)
    if signed > 1:
        raise TlvError("is_signed must be 0 or 1")
    unit = body.string()
    precision = int.from_bytes(body.take(4), "big", signed=True)
    nb_digits = body.uint(2)
    body.end()
    return DigitDecompositionDescriptor(base, bool(signed), unit, precision, nb_digits)


def parse_event(data: bytes) -> OracleEvent:
    reader = Reader(data)
    event = _read_event(reader)
    reader.end()
    return event


def _read_event(reader: Reader) -> OracleEvent:
    body = reader.tlv(ORACLE_EVENT)
    nonces = tuple(body.take(32) for _ in range(body.uint(2)))
    maturity = body.uint(4)
    descriptor = _parse_descriptor(body)
    event_id = body.string()
    body.end()
    return OracleEvent(nonces, maturity, descriptor, event_id)


def parse_announcement(data: bytes) -> OracleAnnouncement:
    reader = Reader(data)
    body = reader.tlv(ORACLE_ANNOUNCEMENT)
    reader.end()
    signature, public_key = body.take(64), body.take(32)
    event = _read_event(body)
    body.end()
    return OracleAnnouncement(signature, public_key, event)


def parse_attestation(data: bytes) -> OracleAttestation:
    reader = Reader(data)
    body = reader.tlv(ORACLE_ATTESTATION)
    reader.end()
    event_id = body.string()
    public_key = body.take(32)
    signatures = tuple(body.take(64) for _ in range(body.uint(2)))
    outcomes = tuple(body.string() for _ in range(body.uint(2)))
    body.end()
    return OracleAttestation(event_id, public_key, signatures, outcomes)
