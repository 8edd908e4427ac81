"""Deterministic DLC nonces: k = tagged_hash(seed, event id, digit index), never random.

Derivation instead of stored randomness means a lost database cannot lose a nonce (the
announcement can always be re-created identically), and the nonce of a given (event, digit) is
always the same k. That is exactly why the attestation guard is keyed by event id: one event id,
one set of nonces, one outcome ever signed with them. The seed is a secret of its own (a 0600 file
beside the oracle key), so the nonces reveal nothing about the key and can be rotated with it.
"""

from __future__ import annotations

from typing import Final

from common.schnorr import tagged_hash

NONCE_TAG: Final = "btcfi-oracle/dlc/nonce/v1"
_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def derive_nonce_secret(seed: bytes, event_id: str, index: int) -> bytes:
    """The 32-byte nonce secret of digit `index` of `event_id` (a valid scalar, never zero)."""
    if len(seed) != 32:
        raise ValueError("the nonce seed is 32 bytes")
    event = event_id.encode("utf-8")
    for counter in range(256):  # a hash >= n or == 0 happens with probability ~2^-128
        candidate = tagged_hash(
            NONCE_TAG,
            seed
            + len(event).to_bytes(2, "big")
            + event
            + index.to_bytes(2, "big")
            + bytes((counter,)),
        )
        if 0 < int.from_bytes(candidate, "big") < _ORDER:
            return candidate
    raise ValueError("no valid nonce found")  # pragma: no cover (never happens)
