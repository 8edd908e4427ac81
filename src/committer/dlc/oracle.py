"""Announcing and attesting BTC/USD numeric events: pure functions, time and keys passed in.

An event is "the BTC/USD price at time T" for T on the configured schedule (default every hour on
the hour). Its outcome is the closed round whose candle ends at T (minute T - 60), rounded half to
even to whole USD and decomposed into `nb_digits` base-2 digits (default 20: up to 1,048,575 USD).
What is hashed before BIP340 signing is a setting (`SigningMode`): implementations disagree
(README, "DLC oracle"), and one signature cannot satisfy both families.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final

from committer.dlc.digits import decompose, max_outcome, recompose
from committer.dlc.nonces import derive_nonce_secret
from committer.dlc.schnorr import nonce_point, sign_with_nonce
from committer.dlc.tlv import (
    DigitDecompositionDescriptor,
    OracleAnnouncement,
    OracleAttestation,
    OracleEvent,
)
from common.schnorr import SigningKey, tagged_hash, verify

ANNOUNCEMENT_TAG: Final = "DLC/oracle/announcement/v0"
ATTESTATION_TAG: Final = "DLC/oracle/attestation/v0"
BASE: Final = 2
UNIT: Final = "USD"
SIMULATED_PREFIX: Final = "SIMULATED-"


class SigningMode(StrEnum):
    """`plain`: SHA-256 (dlcspecs vectors, rust-dlc); `tagged`: BIP340 tags (bitcoin-s, DDK)."""

    PLAIN = "plain"
    TAGGED = "tagged"


def announcement_message(event: OracleEvent, mode: SigningMode) -> bytes:
    """The 32 bytes an announcement signature signs."""
    if mode is SigningMode.PLAIN:
        return hashlib.sha256(event.value()).digest()
    return tagged_hash(ANNOUNCEMENT_TAG, event.serialize())


def outcome_message(outcome: str, mode: SigningMode) -> bytes:
    """The 32 bytes a digit's attestation signature signs (outcome NFC-normalised UTF-8)."""
    data = unicodedata.normalize("NFC", outcome).encode("utf-8")
    if mode is SigningMode.PLAIN:
        return hashlib.sha256(data).digest()
    return tagged_hash(ATTESTATION_TAG, data)


def event_id_for(maturity: int, *, simulated: bool) -> str:
    """`btcusd-2026-12-02T14:00:00Z`; simulated events say so in the id itself."""
    stamp = datetime.fromtimestamp(maturity, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{SIMULATED_PREFIX if simulated else ''}btcusd-{stamp}"


def round_minute_for(maturity: int) -> int:
    """The candle minute whose close is the price at `maturity`: the candle ending then."""
    return maturity - 60


def due_maturities(now: float, *, interval: int, lead: int) -> list[int]:
    """Event times on the schedule (multiples of `interval`) in (now, now + lead]."""
    first = (int(now) // interval + 1) * interval
    return list(range(first, int(now) + lead + 1, interval))


def outcome_value(price_e8: int) -> int:
    """The round's price in whole USD, rounded half to even (precision 0)."""
    return int((Decimal(price_e8) / 10**8).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class EventPlan:
    """What an announcement commits to, before any signature."""

    event_id: str
    maturity: int
    nb_digits: int
    unit: str

    def descriptor(self) -> DigitDecompositionDescriptor:
        return DigitDecompositionDescriptor(BASE, False, self.unit, 0, self.nb_digits)


def nonce_points(seed: bytes, plan: EventPlan) -> tuple[bytes, ...]:
    return tuple(
        nonce_point(derive_nonce_secret(seed, plan.event_id, index))
        for index in range(plan.nb_digits)
    )


def build_announcement(
    key: SigningKey, seed: bytes, plan: EventPlan, mode: SigningMode
) -> OracleAnnouncement:
    """The signed announcement of `plan`, its nonces derived from `seed` and the event id."""
    event = OracleEvent(nonce_points(seed, plan), plan.maturity, plan.descriptor(), plan.event_id)
    signature = key.sign(announcement_message(event, mode))
    return OracleAnnouncement(signature, key.public_key, event)


@dataclass(frozen=True, slots=True)
class SignedOutcome:
    attestation: OracleAttestation
    value: int
    clamped: bool


def sign_outcome(
    key: SigningKey,
    seed: bytes,
    announcement: OracleAnnouncement,
    value: int,
    mode: SigningMode,
) -> SignedOutcome:
    """One signature per digit of `value` with the announced nonces, each verified.

    Only `committer.dlc.guard.AttestationGuard` may call this for a real event: it is the guard
    that makes sure no event is ever signed with two different outcomes.
    """
    event = announcement.event
    if announcement.public_key != key.public_key:
        raise ValueError("the announcement is not this oracle's")
    descriptor = event.descriptor
    largest = max_outcome(descriptor.base, descriptor.nb_digits)
    digits = decompose(value, base=descriptor.base, nb_digits=descriptor.nb_digits)
    secret = key.secret_bytes()
    signatures = []
    for index, digit in enumerate(digits):
        nonce_secret = derive_nonce_secret(seed, event.event_id, index)
        if nonce_point(nonce_secret) != event.nonces[index]:
            raise ValueError(f"nonce {index} does not match the announcement (seed changed?)")
        signatures.append(sign_with_nonce(secret, nonce_secret, outcome_message(digit, mode)))
    attestation = OracleAttestation(event.event_id, key.public_key, tuple(signatures), digits)
    return SignedOutcome(attestation, recompose(digits, base=descriptor.base), value > largest)


def verify_announcement(announcement: OracleAnnouncement, mode: SigningMode) -> bool:
    return verify(
        announcement.public_key,
        announcement_message(announcement.event, mode),
        announcement.signature,
    )


def verify_attestation(
    announcement: OracleAnnouncement, attestation: OracleAttestation, mode: SigningMode
) -> bool:
    """Each signature is by the announced key, uses the announced nonce and signs its digit."""
    event = announcement.event
    if (
        attestation.event_id != event.event_id
        or attestation.public_key != announcement.public_key
        or len(attestation.signatures) != len(event.nonces)
        or len(attestation.outcomes) != len(event.nonces)
    ):
        return False
    for nonce, signature, outcome in zip(
        event.nonces, attestation.signatures, attestation.outcomes, strict=True
    ):
        if outcome not in {str(digit) for digit in range(event.descriptor.base)}:
            return False
        if signature[:32] != nonce:
            return False
        if not verify(announcement.public_key, outcome_message(outcome, mode), signature):
            return False
    return True
