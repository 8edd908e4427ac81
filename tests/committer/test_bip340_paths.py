"""BIP340's official vectors through the committer's own signing and verifying paths."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from coincurve import PublicKeyXOnly

from committer.dlc import oracle as oracle_module
from committer.dlc.oracle import SigningMode, verify_attestation
from committer.dlc.schnorr import sign_with_nonce
from committer.dlc.tlv import (
    DigitDecompositionDescriptor,
    OracleAnnouncement,
    OracleAttestation,
    OracleEvent,
)

VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "bitcoin" / "bip340_test_vectors.csv"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def rows() -> list[dict[str, str]]:
    with VECTORS.open(newline="") as stream:
        return list(csv.DictReader(stream))


def tagged(tag: str, data: bytes) -> bytes:
    digest = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(digest + digest + data).digest()


def bip340_nonce(secret: bytes, aux: bytes, message: bytes) -> bytes:
    """BIP340's own nonce for (secret, aux, message): the test's reference, not product code."""
    public = PublicKeyXOnly.from_secret(secret)
    d = int.from_bytes(secret, "big")
    if public.parity:
        d = N - d
    t = (d ^ int.from_bytes(tagged("BIP0340/aux", aux), "big")).to_bytes(32, "big")
    k = int.from_bytes(tagged("BIP0340/nonce", t + public.format() + message), "big") % N
    return k.to_bytes(32, "big")


@pytest.mark.parametrize(
    "row", [r for r in rows() if r["secret key"]], ids=lambda r: f"vector{r['index']}"
)
def test_chosen_nonce_signing_gives_the_bip340_signature(row: dict[str, str]) -> None:
    secret = bytes.fromhex(row["secret key"])
    message = bytes.fromhex(row["message"])
    nonce = bip340_nonce(secret, bytes.fromhex(row["aux_rand"]), message)
    assert sign_with_nonce(secret, nonce, message).hex().upper() == row["signature"]


@pytest.mark.parametrize("row", rows(), ids=lambda r: f"vector{r['index']}")
def test_the_attestation_verifier_accepts_exactly_the_valid_vectors(
    row: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each vector as a one-digit 'attestation': the verifier agrees with BIP340's verdict."""
    signature = bytes.fromhex(row["signature"])
    public_key = bytes.fromhex(row["public key"])
    message = bytes.fromhex(row["message"])
    if len(message) != 32:
        pytest.skip("attestations sign 32-byte hashes")
    event = OracleEvent(
        (signature[:32],), 0, DigitDecompositionDescriptor(2, False, "USD", 0, 1), "vector"
    )
    announcement = OracleAnnouncement(bytes(64), public_key, event)
    attestation = OracleAttestation("vector", public_key, (signature,), ("0",))
    # The vector signs its own 32-byte message, not a digit's hash: the verifier is given it.
    monkeypatch.setattr(oracle_module, "outcome_message", lambda _outcome, _mode: message)
    verdict = verify_attestation(announcement, attestation, SigningMode.PLAIN)
    assert verdict is (row["verification result"] == "TRUE")
