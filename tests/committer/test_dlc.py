"""The DLC oracle against the dlcspecs vectors, an independent verifier and btclib-wallet."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path

import pytest
from btclib_wallet.dlc import oracle as btclib_dlc
from coincurve import PublicKeyXOnly

from committer.dlc.digits import decompose, max_outcome, recompose
from committer.dlc.nonces import derive_nonce_secret
from committer.dlc.oracle import (
    EventPlan,
    SigningMode,
    build_announcement,
    due_maturities,
    event_id_for,
    outcome_message,
    outcome_value,
    sign_outcome,
    verify_announcement,
    verify_attestation,
)
from committer.dlc.schnorr import NonceSigningError, sign_with_nonce, signature_point
from committer.dlc.tlv import (
    ORACLE_EVENT,
    Reader,
    TlvError,
    parse_announcement,
    parse_attestation,
    parse_event,
)
from common.schnorr import SigningKey

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitcoin" / "dlcspecs"
ORACLE = SigningKey(bytes.fromhex("42" * 32))
SEED = bytes.fromhex("5e" * 32)
MATURITY = 1_796_004_000


def independent_verify(public_key: bytes, message32: bytes, signature: bytes) -> bool:
    """BIP340 verification straight on coincurve, sharing no code with the committer."""
    try:
        return bool(PublicKeyXOnly(public_key).verify(signature, message32))
    except ValueError:
        return False


def independent_attestation_check(
    tlv_announcement: bytes, tlv_attestation: bytes, tagged: bool
) -> int:
    """Parse both TLVs by hand, check every digit signature, return the attested value."""

    def tagged_hash(tag: str, data: bytes) -> bytes:
        t = hashlib.sha256(tag.encode()).digest()
        return hashlib.sha256(t + t + data).digest()

    def bigsize(data: bytes, at: int) -> tuple[int, int]:
        first = data[at]
        width = {0xFD: 2, 0xFE: 4, 0xFF: 8}.get(first)
        if width is None:
            return first, at + 1
        return int.from_bytes(data[at + 1 : at + 1 + width], "big"), at + 1 + width

    # announcement: type, length, sig(64), key(32), event TLV: type, length, u16 n, nonces
    _, at = bigsize(tlv_announcement, 0)
    _, at = bigsize(tlv_announcement, at)
    key = tlv_announcement[at + 64 : at + 96]
    _, at = bigsize(tlv_announcement, at + 96)
    _, at = bigsize(tlv_announcement, at)
    count = int.from_bytes(tlv_announcement[at : at + 2], "big")
    nonces = [tlv_announcement[at + 2 + 32 * i : at + 34 + 32 * i] for i in range(count)]
    # attestation: type, length, event id string, key, u16 n sigs, sigs, u16 n outcomes, strings
    _, at = bigsize(tlv_attestation, 0)
    _, at = bigsize(tlv_attestation, at)
    length, at = bigsize(tlv_attestation, at)
    at += length
    assert tlv_attestation[at : at + 32] == key
    at += 32
    n_sigs = int.from_bytes(tlv_attestation[at : at + 2], "big")
    sigs = [tlv_attestation[at + 2 + 64 * i : at + 66 + 64 * i] for i in range(n_sigs)]
    at += 2 + 64 * n_sigs
    n_outcomes = int.from_bytes(tlv_attestation[at : at + 2], "big")
    at += 2
    outcomes = []
    for _ in range(n_outcomes):
        length, at = bigsize(tlv_attestation, at)
        outcomes.append(tlv_attestation[at : at + length].decode())
        at += length
    assert at == len(tlv_attestation)
    assert len(sigs) == len(nonces) == len(outcomes)
    for nonce, sig, outcome in zip(nonces, sigs, outcomes, strict=True):
        assert sig[:32] == nonce
        message = (
            tagged_hash("DLC/oracle/attestation/v0", outcome.encode())
            if tagged
            else hashlib.sha256(outcome.encode()).digest()
        )
        assert independent_verify(key, message, sig), outcome
    return int("".join(outcomes), 2)


def _spec_announcements() -> list[tuple[str, bytes, bytes, bytes]]:
    """(file, signature, public key, oracle_event TLV) of each dlcspecs offer vector."""
    found = []
    for name in ("single_oracle_numerical_test.json", "enum_single_oracle_test.json"):
        offer = json.loads((FIXTURES / name).read_text())["offer_message"]
        text = json.dumps(offer["message"])
        signature = bytes.fromhex(text.split('"announcementSignature": "')[1][:128])
        public_key = bytes.fromhex(text.split('"oraclePublicKey": "')[1][:64])
        serialized = bytes.fromhex(offer["serialized"])
        at = serialized.find(signature + public_key) + 96
        reader = Reader(serialized[at:])
        assert reader.bigsize() == ORACLE_EVENT
        length = reader.bigsize()
        found.append((name, signature, public_key, serialized[at : at + reader.offset + length]))
    return found


@pytest.mark.parametrize("vector", _spec_announcements(), ids=lambda v: v[0])
def test_spec_announcements_verify_in_plain_mode_only(vector) -> None:
    name, signature, public_key, event_tlv = vector
    from committer.dlc.tlv import OracleAnnouncement

    if name.startswith("enum"):
        # Enum events are not what this oracle announces; the signature scheme is the same.
        body = Reader(event_tlv)
        body.bigsize()
        value = body.take(body.bigsize())
        assert independent_verify(public_key, hashlib.sha256(value).digest(), signature)
        return
    event = parse_event(event_tlv)
    assert event.serialize() == event_tlv  # byte-exact round trip of the spec's TLV
    assert event.descriptor.base == 2
    assert event.descriptor.nb_digits == 10
    announcement = OracleAnnouncement(signature, public_key, event)
    assert verify_announcement(announcement, SigningMode.PLAIN)
    assert not verify_announcement(announcement, SigningMode.TAGGED)
    assert parse_announcement(announcement.serialize()) == announcement


@pytest.mark.parametrize(
    "vector",
    json.loads((FIXTURES / "dlc_schnorr_test.json").read_text()),
    ids=lambda v: v["pubNonce"][:8],
)
def test_chosen_nonce_signing_reproduces_the_spec_vectors(vector) -> None:
    inputs = vector["inputs"]
    secret, nonce, message = (bytes.fromhex(inputs[k]) for k in ("privKey", "privNonce", "msgHash"))
    signature = sign_with_nonce(secret, nonce, message)
    assert signature.hex() == vector["signature"]
    point = signature_point(bytes.fromhex(vector["pubKey"]), signature[:32], message)
    assert point.hex() == vector["sigPoint"]


@pytest.mark.parametrize(
    "case",
    json.loads((FIXTURES / "dlc_hash_test.json").read_text()),
    ids=lambda c: c["Description"],
)
def test_outcome_hash_normalises_as_the_spec_says(case) -> None:
    for variant in case["Variants"]:
        assert outcome_message(variant, SigningMode.PLAIN).hex() == case["SHA256"]
        assert unicodedata.normalize("NFC", variant).encode().hex() == case["Expected"]


def test_chosen_nonce_signing_refuses_bad_input() -> None:
    with pytest.raises(NonceSigningError):
        sign_with_nonce(bytes(32), bytes.fromhex("01" * 32), bytes(32))
    with pytest.raises(NonceSigningError):
        sign_with_nonce(bytes.fromhex("01" * 32), bytes(31), bytes(32))


def test_digits_most_significant_first_and_clamped() -> None:
    assert decompose(5, nb_digits=4) == ("0", "1", "0", "1")
    assert decompose(20_000, base=10, nb_digits=6) == ("0", "2", "0", "0", "0", "0")
    assert decompose(2**20 + 5) == ("1",) * 20
    assert decompose(-3, nb_digits=3) == ("0", "0", "0")
    assert max_outcome(2, 20) == 1_048_575
    assert recompose(decompose(97_123)) == 97_123
    with pytest.raises(ValueError, match="digit"):
        recompose(("0", "2"))


def test_schedule_and_rounding() -> None:
    assert due_maturities(MATURITY - 1, interval=3600, lead=7200) == [MATURITY, MATURITY + 3600]
    assert due_maturities(MATURITY, interval=3600, lead=3599) == []
    assert outcome_value(9_712_350_000_000) == 97_124  # .5 -> even
    assert outcome_value(9_712_250_000_000) == 97_122
    assert event_id_for(MATURITY, simulated=True).startswith("SIMULATED-btcusd-")


@pytest.mark.parametrize("mode", list(SigningMode))
def test_announcement_and_attestation_round_trip(mode: SigningMode) -> None:
    plan = EventPlan(event_id_for(MATURITY, simulated=False), MATURITY, 20, "USD")
    announcement = build_announcement(ORACLE, SEED, plan, mode)
    tlv = announcement.serialize()
    assert parse_announcement(tlv) == announcement
    assert verify_announcement(announcement, mode)
    other = SigningMode.TAGGED if mode is SigningMode.PLAIN else SigningMode.PLAIN
    assert not verify_announcement(announcement, other)
    # btclib-wallet, an independent implementation, parses our TLV and checks the signature.
    theirs = btclib_dlc.OracleAnnouncement.parse(tlv)
    scheme = btclib_dlc.TAGGED if mode is SigningMode.TAGGED else btclib_dlc.PLAIN_SHA256
    assert btclib_dlc.verify_announcement(theirs, scheme=scheme)

    signed = sign_outcome(ORACLE, SEED, announcement, 97_123, mode)
    attestation_tlv = signed.attestation.serialize()
    assert parse_attestation(attestation_tlv) == signed.attestation
    assert verify_attestation(announcement, signed.attestation, mode)
    assert not verify_attestation(announcement, signed.attestation, other)
    assert independent_attestation_check(tlv, attestation_tlv, mode is SigningMode.TAGGED) == 97_123
    if mode is SigningMode.TAGGED:
        # btclib-wallet's attestation layout has no outcome count; its check takes the fields.
        att = signed.attestation
        mine = btclib_dlc.OracleAttestation(
            event_id=att.event_id,
            public_key=att.public_key,
            signatures=att.signatures,
            outcomes=att.outcomes,
        )
        assert btclib_dlc.verify_attestation(theirs, mine)


def test_above_range_is_attested_as_the_maximum() -> None:
    plan = EventPlan("btcusd-test", MATURITY, 20, "USD")
    announcement = build_announcement(ORACLE, SEED, plan, SigningMode.TAGGED)
    signed = sign_outcome(ORACLE, SEED, announcement, 2_000_000, SigningMode.TAGGED)
    assert signed.clamped
    assert signed.value == 1_048_575
    assert signed.attestation.outcomes == ("1",) * 20


def test_nonces_are_deterministic_distinct_and_bound_to_the_event() -> None:
    first = [derive_nonce_secret(SEED, "btcusd-a", i) for i in range(20)]
    assert first == [derive_nonce_secret(SEED, "btcusd-a", i) for i in range(20)]
    assert len(set(first)) == 20
    assert derive_nonce_secret(SEED, "btcusd-b", 0) != first[0]
    assert derive_nonce_secret(bytes(32), "btcusd-a", 0) != first[0]


def test_attestation_with_another_seed_is_refused() -> None:
    plan = EventPlan("btcusd-test", MATURITY, 20, "USD")
    announcement = build_announcement(ORACLE, SEED, plan, SigningMode.PLAIN)
    with pytest.raises(ValueError, match="nonce 0 does not match"):
        sign_outcome(ORACLE, bytes(32), announcement, 1, SigningMode.PLAIN)


def test_tlv_parsers_refuse_trailing_and_truncated_bytes() -> None:
    plan = EventPlan("btcusd-test", MATURITY, 20, "USD")
    tlv = build_announcement(ORACLE, SEED, plan, SigningMode.PLAIN).serialize()
    with pytest.raises(TlvError):
        parse_announcement(tlv + b"\x00")
    with pytest.raises(TlvError):
        parse_announcement(tlv[:-1])
